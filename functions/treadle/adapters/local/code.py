"""Local code store: code packages by SHA-256, unpacked once per package."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

from treadle.domain.errors import InvalidCode, NotFound

MAX_UNZIPPED_BYTES = 250 * 1024 * 1024  # Lambda's limit for unzipped code


class LocalCodeStore:
    def __init__(self, root: Path) -> None:
        self._zips = root / "zips"
        self._unpacked = root / "unpacked"
        self._zips.mkdir(parents=True, exist_ok=True)
        self._unpacked.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def put(self, zip_bytes: bytes) -> str:
        validate_zip(zip_bytes)
        key = hashlib.sha256(zip_bytes).hexdigest()
        path = self._zips / f"{key}.zip"
        if not path.exists():
            _atomic_write(path, zip_bytes)
        return key

    def get(self, key: str) -> bytes:
        path = self._zips / f"{key}.zip"
        if not path.exists():
            raise NotFound(f"Code package {key} not found.")
        return path.read_bytes()

    def unpacked(self, key: str) -> Path:
        """Directory with the package's files, unpacked on first use (atomically)."""
        target = self._unpacked / key
        if target.exists():
            return target
        with self._lock:
            if target.exists():
                return target
            tmp = Path(tempfile.mkdtemp(dir=self._unpacked, prefix=".tmp-"))
            try:
                with zipfile.ZipFile(io.BytesIO(self.get(key))) as zf:
                    zf.extractall(tmp)
                for p in [tmp, *tmp.rglob("*")]:
                    # Tenant code is read-only for the tenant's own process.
                    p.chmod(0o555 if p.is_dir() else 0o444)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return target


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


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
