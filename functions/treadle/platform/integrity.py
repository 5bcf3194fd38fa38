"""The start-up check of the embedded data directory: damaged files stop the start.

A disk that flipped bits, a file truncated by a failed copy or restore, a file system
repaired by fsck: the damage surfaces at start, where a message can name the file and
what to do, instead of as "database disk image is malformed" in the middle of a
request hours later, or worse, a clone that silently lacks objects.

- Every SQLite file: `PRAGMA quick_check` (every page and cell is read and checked
  for format, but indexes are not matched against their tables: O(size), measured
  0.11 s for a 100 MB `treadle.db` from the page cache; `integrity_check` does that
  matching too and is several times slower).
- Every Git pack with its index: header, the pack's trailing checksum against the
  SHA of its content and against the index, and the index's own checksum. A pack is
  named by its checksum, so a flipped byte anywhere in it is found; this reads every
  pack once (SHA-1 runs at ~1.1 GB/s here).

Both are reads: the check changes nothing it looks at (SQLite replays a WAL left by a
kill -9 when it opens the file, as any open would).
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from treadle.adapters.sqlite.integrity import quick_check
from treadle.platform.base import StartupError

# The platform's own SQLite files, with what moving one aside loses.
_STORES: dict[str, str] = {
    "treadle.db": "every execution, its history, and every function and version",
    "tenants.db": "every tenant and its access keys",
    "schedules.db": "every schedule",
    "logs.db": "the functions' logs (nothing else)",
    "git/refs.db": "every repository's branches and tags",
    "git/tokens.db": "the Git access tokens (issue new ones)",
}
_FACET_LOSS = "that facet's data (the tenant's SQLite database)"
_PACK_LOSS = (
    "the Git objects in that pack: clones fail until the objects are pushed again "
    "from a clone that has them (git push --mirror)"
)
_HASH_LENGTHS = {20: "sha1", 32: "sha256"}
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Damage:
    path: Path
    what: str
    loses: str
    # The files to move together (a SQLite file with its -wal and -shm: a stale WAL
    # left beside a new database would be replayed into it).
    companions: tuple[Path, ...] = ()


class DataDirectoryDamaged(StartupError):
    """A file of the data directory fails its check: the platform does not start."""

    def __init__(self, data: Path, damages: list[Damage]) -> None:
        super().__init__(_describe(data, damages))
        self.damages = damages


def check_data_dir(data: Path) -> None:
    """Raise `DataDirectoryDamaged` naming every damaged file under `data`."""
    damages = [d for d in (*_sqlite_damages(data), *_pack_damages(data)) if d is not None]
    if damages:
        raise DataDirectoryDamaged(data, damages)


def _sqlite_damages(data: Path) -> Iterator[Damage | None]:
    for rel, loses in _STORES.items():
        path = data / rel
        if path.exists():
            yield _check_sqlite(path, loses)
    facets = data / "facets"
    if facets.is_dir():
        # Hidden directories are facets half made or half deleted: swept at open.
        for path in sorted(facets.glob("[!.]*/[!.]*/db.sqlite")):
            yield _check_sqlite(path, _FACET_LOSS)


def _check_sqlite(path: Path, loses: str) -> Damage | None:
    owner = _owner(path)
    what = quick_check(path)
    if owner is not None:
        _restore_owner(path, owner)
    if what is None:
        return None
    companions = tuple(
        p for p in (Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")) if p.exists()
    )
    return Damage(path, what, loses, companions)


def _owner(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_uid, st.st_gid


def _restore_owner(path: Path, owner: tuple[int, int]) -> None:
    # A facet belongs to its tenant's uid: a -wal or -shm this check made as root must
    # stay openable by the tenant's worker.
    if owner == (os.geteuid(), os.getegid()):
        return
    for extra in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if _owner(extra) != owner:
                os.chown(extra, *owner)
        except OSError:
            continue


def _pack_damages(data: Path) -> Iterator[Damage | None]:
    objects = data / "git" / "objects"
    if not objects.is_dir():
        return
    for dirpath, _dirs, files in os.walk(objects):
        for name in sorted(files):
            # A pack without its index is a publish cut short: never listed, swept.
            if name.endswith(".pack") and not name.startswith(".") and name[:-5] + ".idx" in files:
                pack = Path(dirpath) / name
                what = check_pack(pack, pack.with_suffix(".idx"))
                if what is not None:
                    yield Damage(pack, what, _PACK_LOSS, (pack.with_suffix(".idx"),))


def check_pack(pack: Path, index: Path) -> str | None:
    """What is wrong with a pack and its index, None if nothing."""
    try:
        size = pack.stat().st_size
        hash_len = len(pack.stem) // 2 if len(pack.stem) // 2 in _HASH_LENGTHS else 20
        if size < 12 + hash_len:
            return f"the pack is truncated ({size} bytes, shorter than a header and checksum)"
        digest = hashlib.new(_HASH_LENGTHS[hash_len])
        with pack.open("rb") as handle:
            header = handle.read(12)
            if header[:4] != b"PACK" or int.from_bytes(header[4:8], "big") not in (2, 3):
                return "the pack does not start with a Git pack header"
            digest.update(header)
            left = size - 12 - hash_len
            while left > 0:
                chunk = handle.read(min(_CHUNK, left))
                if not chunk:
                    return "the pack is shorter than it was when read"
                digest.update(chunk)
                left -= len(chunk)
            trailer = handle.read(hash_len)
        if digest.digest() != trailer:
            return (
                "the pack's content does not match its checksum "
                "(bytes changed or the file is truncated)"
            )
        if trailer.hex() != pack.stem and len(pack.stem) == 2 * hash_len:
            return f"the pack's checksum {trailer.hex()} is not the one its name records"
        return _check_index(index, trailer, hash_len)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"


def _check_index(index: Path, pack_checksum: bytes, hash_len: int) -> str | None:
    raw = index.read_bytes()
    if len(raw) < 8 + 256 * 4 + 2 * hash_len:
        return f"its index {index.name} is truncated ({len(raw)} bytes)"
    body, stored = raw[:-hash_len], raw[-hash_len:]
    if hashlib.new(_HASH_LENGTHS[hash_len], body).digest() != stored:
        return f"its index {index.name} does not match its own checksum"
    if body[-hash_len:] != pack_checksum:
        return f"its index {index.name} belongs to another pack"
    return None


def _describe(data: Path, damages: list[Damage]) -> str:
    aside = Path(f"{data}.damaged")
    lines = [
        f"the data directory {data} has damaged files; Treadle does not start on them.",
    ]
    for d in damages:
        lines.append(f"  {d.path}: {d.what}.")
    lines.append(
        "Stop anything else using the directory, then either restore it from a backup "
        "(docs/operating.md, 'Disk full and corruption'), or move each damaged file aside "
        "and start again:"
    )
    for d in damages:
        rel = d.path.relative_to(data) if d.path.is_relative_to(data) else Path(d.path.name)
        target = shlex.quote(str(aside / rel.parent))
        files = " ".join(shlex.quote(str(p)) for p in (d.path, *d.companions))
        lines.append(f"  mkdir -p {target} && mv {files} {target}/")
        lines.append(f"    (this loses {d.loses})")
    return "\n".join(lines)
