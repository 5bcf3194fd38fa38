"""FacetStore adapter: a real SQLite file per tenant and facet under the data directory.

Layout: `<root>/<tenant>/<facet>/db.sqlite` (+ its -wal and -shm). When the platform
runs as root (tenants have uids, `adapters/sandbox/identity.py`):

- `<root>/<tenant>` is root's, group the tenant's gid, 0750: its workers (which get it
  bind-mounted at `/var/treadle/facets`) can walk it but cannot make facets in it, so
  every facet is made here, within the tenant's quota;
- `<root>/<tenant>/<facet>` and its files are the tenant uid's, 0700/0600: SQLite makes
  its -wal and -shm beside the database as the process that opens it.

A facet is made in a hidden directory and renamed into place, and deleted by renaming
it away first: a reader sees a whole facet or none. Names that start with a dot are
not facet names (`facets.models`), so those directories are never listed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from treadle.domain.errors import NotFound
from treadle.facets.models import FacetInfo, check_name
from treadle.failpoints import Kind, boundary

log = logging.getLogger(__name__)

DB = "db.sqlite"
_FILES = (DB, DB + "-wal", DB + "-journal")


class SqliteFacetStore:
    def __init__(
        self,
        root: Path,
        owner: Callable[[str], int | None] | None = None,
        *,
        journal_mode: Literal["WAL", "DELETE"] = "WAL",
        sweep_older_than_s: float = 0.0,
    ) -> None:
        """`owner(tenant)`: the uid (= gid) the tenant's code runs as, None when the
        platform does not change uids (files stay the platform's). `journal_mode`: WAL
        where every process that opens a facet is on this host; DELETE on a network
        file system (EFS), where WAL's shared-memory index cannot be shared.
        `sweep_older_than_s`: how old a hidden directory must be to count as left by a
        killed process: 0 where this process is the only one (the embedded platform holds
        its data directory's lock); on a directory shared by many processes (EFS), long
        enough that another live process cannot still be making or deleting it."""
        self._root = root
        self._owner = owner or (lambda _tenant: None)
        self._journal_mode = journal_mode
        root.mkdir(parents=True, exist_ok=True)
        self._sweep(sweep_older_than_s)

    def _sweep(self, older_than_s: float) -> None:
        # Hidden directories are facets half made or half deleted, or exports, of a
        # killed process.
        cutoff = time.time() - older_than_s

        def stale(path: Path) -> bool:
            try:
                return path.name.startswith(".") and path.lstat().st_mtime <= cutoff
            except FileNotFoundError:  # another process finished with it meanwhile
                return False

        for tenant_dir in self._root.iterdir():
            if stale(tenant_dir):
                shutil.rmtree(tenant_dir, ignore_errors=True)
            elif tenant_dir.is_dir() and not tenant_dir.name.startswith("."):
                for entry in tenant_dir.iterdir():
                    if stale(entry):
                        shutil.rmtree(entry, ignore_errors=True)

    def tenant_dir(self, tenant: str) -> Path:
        """The tenant's directory, made with the modes above if missing."""
        path = self._root / tenant
        uid = self._owner(tenant)
        if not path.is_dir():
            path.mkdir(mode=0o700, exist_ok=True)
        if uid is not None:
            st = path.stat()
            if st.st_uid != 0 or st.st_gid != uid:
                os.chown(path, 0, uid)
            path.chmod(0o750)
        return path

    def _dir(self, tenant: str, name: str) -> Path:
        return self._root / tenant / check_name(name)

    def create(self, tenant: str, name: str) -> bool:
        final = self._dir(tenant, name)
        if final.is_dir():
            return False
        parent = self.tenant_dir(tenant)
        uid = self._owner(tenant)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
        try:
            db = sqlite3.connect(staging / DB)
            try:
                # WAL is a property of the file: every later connection gets it.
                db.execute(f"PRAGMA journal_mode={self._journal_mode}")
                db.execute("CREATE TABLE IF NOT EXISTS _treadle_probe(x)")
                db.execute("DROP TABLE _treadle_probe")  # the file now has a header
            finally:
                db.close()
            for path in staging.iterdir():
                path.chmod(0o600)
            staging.chmod(0o700)
            if uid is not None:
                for path in [staging, *staging.iterdir()]:
                    os.chown(path, uid, uid)
            boundary(Kind.FACET, "before")
            os.rename(staging, final)  # atomic; fails if another made it first
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if final.is_dir():
                return False
            raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        boundary(Kind.FACET, "after")
        return True

    def exists(self, tenant: str, name: str) -> bool:
        return (self._dir(tenant, name) / DB).is_file()

    def _names(self, tenant: str) -> list[str]:
        try:
            entries = sorted(os.listdir(self._root / tenant))
        except FileNotFoundError:
            return []
        return [e for e in entries if not e.startswith(".") and self.exists(tenant, e)]

    def count(self, tenant: str) -> int:
        return len(self._names(tenant))

    def list(self, tenant: str) -> list[FacetInfo]:
        found = []
        for name in self._names(tenant):
            size, mtime = self._stat(self._dir(tenant, name))
            if size >= 0:
                found.append(FacetInfo(name=name, size_bytes=size, last_used_ms=mtime))
        return found

    @staticmethod
    def _stat(directory: Path) -> tuple[int, int]:
        size, mtime, seen = 0, 0, False
        for file in _FILES:
            try:
                st = (directory / file).stat()
            except FileNotFoundError:
                continue
            seen = True
            size += st.st_size
            mtime = max(mtime, st.st_mtime_ns // 1_000_000)
        return (size, mtime) if seen else (-1, 0)

    def size(self, tenant: str, name: str) -> int:
        size, _ = self._stat(self._dir(tenant, name))
        if size < 0:
            raise NotFound(f"Facet not found: {name}")
        return size

    def export(self, tenant: str, name: str) -> bytes:
        path = self._dir(tenant, name) / DB
        if not path.is_file():
            raise NotFound(f"Facet not found: {name}")
        # The backup API copies one consistent snapshot (a read transaction on the
        # WAL). As root, SQLite gives any -wal/-shm it makes the database's owner.
        scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=self._root))
        try:
            source = sqlite3.connect(path, timeout=10)
            source.execute("PRAGMA query_only=1")
            target = sqlite3.connect(scratch / DB)
            try:
                source.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                target.close()
                source.close()
            return (scratch / DB).read_bytes()
        except sqlite3.Error as exc:
            raise NotFound(f"Facet not found: {name} ({exc})") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def delete(self, tenant: str, name: str) -> bool:
        directory = self._dir(tenant, name)
        doomed = directory.parent / f".{name}.deleted-{uuid.uuid4().hex}"
        boundary(Kind.FACET, "before")
        try:
            os.rename(directory, doomed)
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):
            shutil.rmtree(doomed)
        boundary(Kind.FACET, "after")
        return True
