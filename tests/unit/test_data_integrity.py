"""The start-up check: damaged SQLite files and Git packs are found and named, with
what to do; intact ones (including a WAL left by a kill -9) pass."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest
from dulwich.objects import Blob

from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.sqlite.db import Database
from treadle.artifacts.packs import PackCache, PackObjectStore
from treadle.platform.base import StartupError
from treadle.platform.integrity import DataDirectoryDamaged, check_data_dir

PAGE = 4096


def _data_dir(tmp_path: Path) -> Path:
    """A data directory with a filled `treadle.db`, a facet and one repository's pack."""
    data = tmp_path / "data"
    db = Database(data / "treadle.db")
    with db.write() as conn:
        conn.executemany(
            "INSERT INTO events (arn, event_id, op_id, event_type, body) VALUES (?, ?, ?, ?, ?)",
            [("arn:x", i, "op", "StepSucceeded", "b" * 300) for i in range(3000)],
        )
    db.close()
    facet = data / "facets" / "123456789012" / "orders" / "db.sqlite"
    facet.parent.mkdir(parents=True)
    conn = sqlite3.connect(facet)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, body TEXT)")
    conn.close()
    store = PackObjectStore(
        LocalObjectStore(data / "git" / "objects"), "123456789012", "functions", PackCache()
    )
    store.add_objects([(Blob.from_string(os.urandom(20_000)), None)])
    store.close()
    return data


def _pack(data: Path) -> Path:
    return next((data / "git" / "objects").rglob("*.pack"))


def _damaged(data: Path) -> DataDirectoryDamaged:
    with pytest.raises(DataDirectoryDamaged) as raised:
        check_data_dir(data)
    assert isinstance(raised.value, StartupError)  # `treadle dev` prints it, no traceback
    return raised.value


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_an_intact_data_directory_passes(tmp_path: Path) -> None:
    check_data_dir(_data_dir(tmp_path))


def test_an_empty_or_missing_data_directory_passes(tmp_path: Path) -> None:
    check_data_dir(tmp_path / "nothing-yet")
    check_data_dir(tmp_path)


def test_a_wal_left_by_a_killed_process_is_not_damage(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = Database(data / "treadle.db")
    with db.write() as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(
            "INSERT INTO events (arn, event_id, op_id, event_type, body)"
            " VALUES ('a', 1, 'o', 'T', 'b')"
        )
    # Not closed: the committed row lives only in the -wal, as after a kill -9.
    assert (data / "treadle.db-wal").stat().st_size > 0
    check_data_dir(data)
    db.close()


def test_a_truncated_sqlite_file_is_named_with_the_command_to_move_it_aside(
    tmp_path: Path,
) -> None:
    data = _data_dir(tmp_path)
    path = data / "treadle.db"
    os.truncate(path, path.stat().st_size // 2)
    damage = _damaged(data)
    assert [d.path for d in damage.damages] == [path]
    message = damage.message
    assert f"{path}: SQLite cannot read it (database disk image is malformed)" in message
    assert f"mkdir -p {data}.damaged && mv {path} {data}.damaged/" in message
    assert "every execution" in message
    assert "restore it from a backup" in message


def test_a_page_with_overwritten_structure_is_found_by_quick_check(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    path = data / "treadle.db"
    conn = sqlite3.connect(path)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()
    conn.close()
    # The cell pointers of the events table's root page: SQLite has no page checksums,
    # so damage is found where the b-tree's own structure stops adding up.
    _overwrite(path, (root - 1) * PAGE + 12, b"\xff" * 8)
    damage = _damaged(data)
    assert damage.damages[0].path == path
    # Found while opening the table or by the check itself, whichever reads it first.
    assert re.search("malformed|quick_check found", damage.damages[0].what)


def test_a_file_that_is_not_a_database_is_damage_and_its_wal_moves_with_it(
    tmp_path: Path,
) -> None:
    data = _data_dir(tmp_path)
    path = data / "treadle.db"
    Path(f"{path}-wal").write_bytes(b"")
    _overwrite(path, 0, b"garbage!" * 4)
    damage = _damaged(data)
    assert "file is not a database" in damage.damages[0].what
    assert f"mv {path} {path}-wal {data}.damaged/" in damage.message


def test_a_damaged_facet_is_named_and_its_owner_kept(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    facet = data / "facets" / "123456789012" / "orders" / "db.sqlite"
    os.truncate(facet, 1000)
    damage = _damaged(data)
    assert [d.path for d in damage.damages] == [facet]
    assert f"{data}.damaged/facets/123456789012/orders" in damage.message
    assert "that facet's data" in damage.message


def test_a_pack_with_a_flipped_byte_is_named(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    pack = _pack(data)
    with pack.open("r+b") as handle:
        handle.seek(pack.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))
    damage = _damaged(data)
    assert [d.path for d in damage.damages] == [pack]
    assert "does not match its checksum" in damage.damages[0].what
    assert f"mv {pack} {pack.with_suffix('.idx')} " in damage.message
    assert "git push --mirror" in damage.message


def test_a_truncated_pack_and_a_damaged_index_are_named(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    pack = _pack(data)
    os.truncate(pack, 8)
    assert "truncated" in _damaged(data).damages[0].what

    data = _data_dir(tmp_path / "again")
    index = _pack(data).with_suffix(".idx")
    _overwrite(index, 2000 if index.stat().st_size > 2000 else 100, b"\x00\x01")
    assert "does not match its own checksum" in _damaged(data).damages[0].what


def test_a_pack_without_its_index_is_a_publish_cut_short_not_damage(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    pack = _pack(data)
    pack.with_suffix(".idx").unlink()
    os.truncate(pack, 8)
    check_data_dir(data)


def test_every_damaged_file_is_listed_at_once(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    os.truncate(data / "treadle.db", 5000)
    os.truncate(_pack(data), 30)
    assert len(_damaged(data).damages) == 2
