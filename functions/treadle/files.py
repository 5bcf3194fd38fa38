"""Durable replacement of a small file, the one way every local writer does it.

Write a temporary file beside the target (os.replace must not cross file systems),
fsync it, rename it over the target, fsync the directory: after a crash the path holds
the old bytes or the new, never a mix, and once this returns the new bytes survive a
power cut. A failed write leaves no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from treadle.disk_full import translating_disk_full

_MKDIR_ATTEMPTS = 3


def write_atomically(path: Path, data: bytes, *, tmp_prefix: str = ".tmp-") -> None:
    """Replace `path` with `data`, a file private to this user (0600) from its first byte.

    `tmp_prefix` names the temporary file, so a reader listing the directory can tell
    it from real entries. A full disk raises `StorageFull` and leaves `path` as it was.
    """
    with translating_disk_full(path.parent):
        _write_atomically(path, data, tmp_prefix)


def _write_atomically(path: Path, data: bytes, tmp_prefix: str) -> None:
    for attempt in range(_MKDIR_ATTEMPTS):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # mkstemp: O_EXCL and 0600, so the content is never readable by others.
            fd, tmp = tempfile.mkstemp(prefix=tmp_prefix, dir=path.parent)
            break
        except FileNotFoundError:
            # A concurrent delete pruned the just-created empty directory: make it again.
            if attempt == _MKDIR_ATTEMPTS - 1:
                raise
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename (or unlink) in `directory` itself durable across a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
