"""A full disk: every local writer fails with `StorageFull`, writes nothing half, and
works again as soon as space is back, without reopening anything."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.tmpfs import fill, small_tmpfs
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.sqlite.connection import SqliteFile
from treadle.api.errors import classify, lambda_error, v1_error
from treadle.disk_full import is_disk_full
from treadle.domain.errors import StorageFull
from treadle.files import write_atomically

_SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB NOT NULL);"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", "2m") as path:
        yield path


def _zip(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return event\n")
        zf.writestr("blob.bin", payload)
    return buf.getvalue()


def _rows(db: SqliteFile) -> list[str]:
    with db.locked() as conn:
        return [k for (k,) in conn.execute("SELECT k FROM t ORDER BY k")]


def test_a_transaction_that_does_not_fit_rolls_back_and_the_next_one_commits(
    tmp_path: Path,
) -> None:
    # max_page_count makes SQLite itself answer SQLITE_FULL, as on a full device.
    db = SqliteFile(tmp_path / "data" / "t.db", schema=_SCHEMA)
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('kept', x'00')")
    with db.locked() as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(StorageFull) as raised, db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('small', x'00')")
        conn.execute("INSERT INTO t VALUES ('big', zeroblob(1000000))")
    assert str(tmp_path / "data") in raised.value.message
    assert raised.value.retryable
    assert _rows(db) == ["kept"]
    with db.locked() as conn:
        conn.execute("PRAGMA max_page_count = 1073741823")
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('big', zeroblob(1000000))")
    assert _rows(db) == ["big", "kept"]
    db.close()


def test_a_full_device_fails_the_transaction_and_freeing_space_recovers(disk: Path) -> None:
    db = SqliteFile(disk / "t.db", schema=_SCHEMA)
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('kept', x'00')")
    filler = fill(disk)
    with pytest.raises(StorageFull, match="Free space there"), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('big', zeroblob(600000))")
    assert _rows(db) == ["kept"]
    filler.unlink()
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('big', zeroblob(600000))")
    assert _rows(db) == ["big", "kept"]
    db.close()
    with sqlite3.connect(disk / "t.db") as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_file_that_does_not_fit_keeps_the_old_bytes_and_leaves_no_temporary(
    disk: Path,
) -> None:
    target = disk / "objects" / "key"
    write_atomically(target, b"old")
    filler = fill(disk)
    with pytest.raises(StorageFull, match=str(target.parent)):
        write_atomically(target, b"x" * 600_000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["key"]
    filler.unlink()
    write_atomically(target, b"x" * 600_000)
    assert target.read_bytes() == b"x" * 600_000


def test_a_pack_object_that_does_not_fit_is_not_listed(disk: Path) -> None:
    store = LocalObjectStore(disk / "objects")
    filler = fill(disk)
    with pytest.raises(StorageFull):
        store.put("tenants/t/repos/r/packs/p.pack", b"P" * 600_000)
    assert store.list("tenants/") == []
    filler.unlink()
    store.put("tenants/t/repos/r/packs/p.pack", b"P" * 600_000)
    assert store.list("tenants/") == ["tenants/t/repos/r/packs/p.pack"]


def test_a_code_package_that_does_not_fit_leaves_no_partial_zip(disk: Path) -> None:
    code = LocalCodeStore(disk / "code")
    package = _zip(b"z" * 600_000)
    filler = fill(disk)
    with pytest.raises(StorageFull):
        code.put(package)
    assert list((disk / "code" / "zips").iterdir()) == []
    filler.unlink()
    key = code.put(package)
    assert code.get(key) == package


def test_an_unpacking_that_does_not_fit_leaves_nothing_and_is_redone_later(
    disk: Path,
) -> None:
    code = LocalCodeStore(disk / "code")
    key = code.put(_zip(b"z" * 600_000))
    filler = fill(disk)
    with pytest.raises(StorageFull):
        code.unpacked(key, "tenant1")
    assert list((disk / "code" / "unpacked" / "tenant1").iterdir()) == []
    filler.unlink()
    assert (code.unpacked(key, "tenant1") / "blob.bin").stat().st_size == 600_000


def test_the_api_answers_a_full_disk_as_retryable_with_the_message() -> None:
    error = StorageFull("No space left for the platform's data in /d: nothing was written.")
    assert classify(error) == (503, "ServiceException", error.message)
    response = lambda_error(error)
    assert response.status == 503
    assert response.headers["x-amzn-errortype"] == "ServiceException"
    assert b"No space left" in response.body
    assert b'"retryable":true' in v1_error(error).body.replace(b" ", b"")


def test_a_full_disk_no_adapter_translated_is_still_a_clear_answer() -> None:
    raw = sqlite3.OperationalError("database or disk is full")
    assert is_disk_full(raw)
    status, code, message = classify(raw)
    assert (status, code) == (503, "ServiceException")
    assert "No space left" in message
    assert is_disk_full(OSError(28, "No space left on device"))
    assert not is_disk_full(OSError(2, "No such file"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
