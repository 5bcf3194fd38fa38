"""`ObjectStore` over a local directory: the embedded stand-in for S3."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

from treadle.artifacts.ports import (
    RESERVED_SEGMENT_PREFIX,
    ObjectInfo,
    ObjectNotFound,
    check_key,
    check_prefix,
)
from treadle.files import write_atomically

# Temporary files live beside their target (os.replace must not cross file systems)
# under a name no valid key can have, so `list` can skip them.
_TMP_PREFIX = RESERVED_SEGMENT_PREFIX


class LocalObjectStore:
    """Keys map to files under `root`; each put is atomic and durable.

    A put writes a temporary file, fsyncs it, renames it over the target and fsyncs
    the directory: after a crash the key holds the old bytes or the new, and once put
    returns the new bytes survive a power cut.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)
        self._sweep()

    def _sweep(self) -> None:
        """Remove the temporary files of puts cut short by a crash (kill -9 between
        writing and renaming). Only at open: the embedded platform holds its data
        directory's lock, so no other process has a put in flight here."""
        for dirpath, _dirs, files in os.walk(self._root):
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    (Path(dirpath) / name).unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        check_key(key)
        return self._root.joinpath(*key.split("/"))

    def put(self, key: str, data: bytes) -> None:
        write_atomically(self._path(key), data, tmp_prefix=_TMP_PREFIX)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        # Walk only the deepest directory the prefix names, not the whole root.
        directory = prefix if prefix.endswith("/") else prefix.rpartition("/")[0]
        base = self._root.joinpath(*[s for s in directory.split("/") if s])
        keys: list[str] = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self._root).as_posix()
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        keys.sort()
        return keys

    def list_info(self, prefix: str) -> builtins.list[ObjectInfo]:
        found = []
        for key in self.list(prefix):
            try:
                st = self._path(key).stat()
            except FileNotFoundError:  # deleted since listed
                continue
            found.append(ObjectInfo(key, st.st_size, st.st_mtime_ns // 1_000_000))
        return found

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        # Prune now-empty directories so deleted repositories leave nothing behind.
        parent = path.parent
        while parent != self._root:
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone): stop
                break
            parent = parent.parent
