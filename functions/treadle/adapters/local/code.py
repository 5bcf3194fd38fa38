"""Local code store: code packages by SHA-256, unpacked once per package and tenant.

Zips are stored once per content, whoever uploaded them (only the platform reads
them). Unpacked trees, which tenant code reads, are one per tenant: the same zip
deployed by two tenants is unpacked twice, so that each copy can belong to its
tenant's group alone. Layout and modes, when the sandbox runs tenants as their own
uids (`group` given):

    code/                      0711 the platform's; passable, not listable
      zips/                    0700
      unpacked/                0711
        <tenant>/              0750 root:<tenant gid>
          <sha256>/...         0550 dirs, 0440 files, root:<tenant gid>: read-only

Without uids (an unprivileged platform) the same tree is the platform user's alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import py_compile
import re
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

from treadle.disk_full import translating_disk_full
from treadle.domain.errors import InvalidCode, InvalidParameter, NotFound
from treadle.domain.ports import MAX_UNZIPPED_BYTES
from treadle.files import write_atomically

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a path component, never ".."
_SHARED_ENTRY = re.compile(r"[0-9a-f]{64}|\.tmp-.*")


class LocalCodeStore:
    def __init__(self, root: Path, *, clean: bool = True) -> None:
        """`clean`: sweep what an earlier run left (the first of several processes does;
        another's sweep could take an upload of a live process for a leftover)."""
        self._zips = root / "zips"
        self._unpacked = root / "unpacked"
        for path, mode in ((root, 0o711), (self._zips, 0o700), (self._unpacked, 0o711)):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
        self._lock = threading.Lock()
        self._homes: dict[str, int | None] = {}  # tenant -> group its directory was set for
        if clean:
            self._drop_shared_trees()
            for leftover in self._zips.glob(".tmp-*"):  # of an upload cut short by a crash
                leftover.unlink(missing_ok=True)

    def _drop_shared_trees(self) -> None:
        # Trees unpacked before they were per tenant (unpacked/<sha256>, readable by any
        # uid), and leftovers of an unpacking cut short: a cache, rebuilt on demand.
        for entry in self._unpacked.iterdir():
            if _SHARED_ENTRY.fullmatch(entry.name):
                _remove_tree(entry)

    def put(self, zip_bytes: bytes) -> str:
        validate_zip(zip_bytes)
        key = hashlib.sha256(zip_bytes).hexdigest()
        path = self._zips / f"{key}.zip"
        if not path.exists():
            # A failed write (a full disk: StorageFull) leaves no partial zip behind.
            write_atomically(path, zip_bytes)
        return key

    def restore(self, key: str, zip_bytes: bytes) -> None:
        path = self._zips / f"{key}.zip"
        with self._lock:
            if not path.exists():
                write_atomically(path, zip_bytes)

    def delete(self, key: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise InvalidParameter(f"Not a code package key: {key!r}.")
        with self._lock:
            (self._zips / f"{key}.zip").unlink(missing_ok=True)
            for tree in self._unpacked.glob(f"*/{key}"):
                _remove_tree(tree)

    def get(self, key: str) -> bytes:
        path = self._zips / f"{key}.zip"
        if not path.exists():
            raise NotFound(f"Code package {key} not found.")
        return path.read_bytes()

    def unpacked(self, key: str, tenant: str, *, group: int | None = None) -> Path:
        """`tenant`'s copy of the package's files, unpacked on first use (atomically).

        `group`: the gid the sandbox runs the tenant's code with (None: uids are not
        changed); the copy is readable by that group and the platform only.
        """
        if not _TENANT.fullmatch(tenant):
            raise InvalidParameter(f"Not a tenant id: {tenant!r}.")
        target = self._unpacked / tenant / key
        if tenant in self._homes and self._homes[tenant] == group and target.exists():
            return target
        with self._lock:
            home = self._home(tenant, group)
            if not target.exists():
                with translating_disk_full(self._unpacked):
                    self._unpack(key, home, target, group)
        return target

    def _home(self, tenant: str, group: int | None) -> Path:
        home = self._unpacked / tenant
        if tenant in self._homes and self._homes[tenant] == group:
            return home
        try:
            found: int | None = home.stat().st_gid
        except FileNotFoundError:
            found = None
        if found is not None and group is not None and found != group:
            # Unpacked for another gid (the uid registry was lost): that gid may be
            # another tenant's now. A cache: unpacked again below.
            _remove_tree(home)
            found = None
        if found is None:
            home.mkdir()
        for leftover in home.glob(".tmp-*"):  # of an unpacking cut short by a crash...
            if not _unpacking_elsewhere(leftover.name):  # ...not one under way in a process
                _remove_tree(leftover)
        if group is not None:
            os.chown(home, -1, group)
        home.chmod(0o750 if group is not None else 0o700)
        self._homes[tenant] = group
        return home

    def _unpack(self, key: str, home: Path, target: Path, group: int | None) -> None:
        # Unpacked next to its final place: renaming a read-only directory into another
        # parent needs write access to it (its ".." changes), which only root has.
        # Named with this process's pid: several processes may unpack into one home.
        tmp = Path(tempfile.mkdtemp(dir=home, prefix=f".tmp-{os.getpid()}-"))
        try:
            with zipfile.ZipFile(io.BytesIO(self.get(key))) as zf:
                zf.extractall(tmp)
            _compile_bytecode(tmp)
            # Tenant code is read-only, even for the tenant's own process.
            dir_mode, file_mode = (0o550, 0o440) if group is not None else (0o500, 0o400)
            for p in [tmp, *tmp.rglob("*")]:
                if group is not None:
                    os.chown(p, -1, group)
                p.chmod(dir_mode if p.is_dir() else file_mode)
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():
                    raise
                _remove_tree(tmp)  # another process unpacked the same package first
        except BaseException:
            _remove_tree(tmp)
            raise


# Bytecode is compiled here, once per package, for sources up to these sizes: the copy is
# read-only, so otherwise every cold start compiles every module it imports (the
# handler module alone: ~1 ms of a 10 ms cold start). Parsing is bounded because it
# runs in the platform's process; bigger sources are compiled by the worker, as before.
MAX_COMPILED_FILE_BYTES = 512 * 1024
MAX_COMPILED_TOTAL_BYTES = 8 * 1024 * 1024


def _compile_bytecode(root: Path) -> None:
    budget = MAX_COMPILED_TOTAL_BYTES
    for source in sorted(root.rglob("*.py")):
        try:
            size = source.stat().st_size
        except OSError:
            continue
        if not source.is_file() or source.is_symlink() or size > MAX_COMPILED_FILE_BYTES:
            continue
        if size > budget:
            return
        budget -= size
        try:
            # Timestamp-checked, as the interpreter writes them: only the source's own
            # interpreter version and flags read it, and a bad file stays the worker's
            # SyntaxError to report (Runtime.UserCodeSyntaxError), not ours.
            py_compile.compile(str(source), doraise=True, quiet=2)
        except (
            py_compile.PyCompileError,
            SyntaxError,
            ValueError,
            OSError,
            RecursionError,
            MemoryError,
        ):
            continue


def _remove_tree(path: Path) -> None:
    # Unpacked trees are read-only: their (unprivileged) owner must open them up first.
    for dirpath, _, _ in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def validate_zip(zip_bytes: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
            total = 0
            for info in zf.infolist():
                name = info.filename
                if name.startswith("/") or ".." in Path(name).parts:
                    raise InvalidCode(f"Unsafe path in code package: {name}")
                total += info.file_size
            if total > MAX_UNZIPPED_BYTES:
                raise InvalidCode("Unzipped code size exceeds 262144000 bytes.")
            bad = zf.testzip()
            if bad is not None:
                raise InvalidCode(f"Corrupt file in code package: {bad}")
    except zipfile.BadZipFile:
        raise InvalidCode("Could not unzip uploaded file. Please check your file.") from None


def _unpacking_elsewhere(name: str) -> bool:
    """Whether `.tmp-<pid>-...` is being unpacked by another live process."""
    pid = name.split("-")[1] if name.count("-") >= 2 else ""
    return pid.isdigit() and int(pid) != os.getpid() and os.path.exists(f"/proc/{pid}")
