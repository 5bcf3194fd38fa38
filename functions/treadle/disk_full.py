"""A full disk, said once: every local writer turns its own flavour of "no space" into
the domain's `StorageFull`, which names the directory to free space in.

SQLite reports it as `SQLITE_FULL` ("database or disk is full"), the OS as `ENOSPC`
(or `EDQUOT` when a quota, not the device, is exhausted). Both mean the same to a
caller: nothing was written, and the same request succeeds once space is back.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from treadle.domain.errors import StorageFull

_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL, which the module exports only from 3.11 on
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _NO_SPACE
    # sqlite3's errors, recognised without importing SQLite outside its adapters.
    if type(exc).__module__ != "sqlite3":
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == _SQLITE_FULL
    return "database or disk is full" in str(exc)


def storage_full(where: Path | str) -> StorageFull:
    return StorageFull(
        f"No space left for the platform's data in {where}: nothing was written. "
        "Free space there and retry; the platform carries on by itself."
    )


@contextmanager
def translating_disk_full(where: Path | str) -> Iterator[None]:
    """Re-raise a full disk inside the block as `StorageFull` naming `where`."""
    try:
        yield
    except Exception as exc:
        if is_disk_full(exc):
            raise storage_full(where) from exc
        raise
