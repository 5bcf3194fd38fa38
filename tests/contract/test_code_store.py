"""One contract for the CodeStore adapters: local files (embedded) and S3 with its local
cache (AWS, moto). Packages are content-addressed and idempotent; `restore` puts back
a package that went missing; `delete` removes the package and every tenant's unpacked
copy, and another process (a fresh cache) no longer finds it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from support.server import zip_files
from treadle.adapters.aws.s3_code import S3CodeStore
from treadle.adapters.local.code import LocalCodeStore
from treadle.domain.errors import InvalidParameter, NotFound

BUCKET = "treadle-code"

Opener = Callable[[Path], Any]  # a process's store over the same backing storage


def _zip(text: str) -> bytes:
    return zip_files({"handler.py": text})  # the same text, the same bytes


@pytest.fixture(params=["local", "s3"])
def opener(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Opener]:
    if request.param == "local":
        yield lambda _cache: LocalCodeStore(tmp_path / "code")
        return
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    yield lambda cache: S3CodeStore(s3, BUCKET, LocalCodeStore(cache))
    mock.__exit__(None, None, None)


def test_a_package_is_stored_once_by_its_hash(opener: Opener, tmp_path: Path) -> None:
    store = opener(tmp_path / "one")
    data = _zip("a = 1")
    key = store.put(data)
    assert store.put(data) == key and len(key) == 64
    assert opener(tmp_path / "two").get(key) == data  # another process reads it


def test_delete_removes_the_package_and_every_unpacked_copy(opener: Opener, tmp_path: Path) -> None:
    store = opener(tmp_path / "one")
    kept, gone = store.put(_zip("kept = 1")), store.put(_zip("gone = 1"))
    copies = [store.unpacked(gone, t) for t in ("tenant-a", "tenant-b")]
    assert all((c / "handler.py").exists() for c in copies)
    store.delete(gone)
    assert not any(c.exists() for c in copies)
    for reader in (store, opener(tmp_path / "two")):
        with pytest.raises(NotFound):
            reader.get(gone)
        assert reader.get(kept) == _zip("kept = 1")
    store.delete(gone)  # absent: nothing to do
    with pytest.raises(InvalidParameter):
        store.delete("../escape")


def test_restore_puts_back_only_what_is_missing(opener: Opener, tmp_path: Path) -> None:
    store = opener(tmp_path / "one")
    data = _zip("b = 2")
    key = store.put(data)
    store.delete(key)
    store.restore(key, data)
    assert opener(tmp_path / "two").get(key) == data
    store.restore(key, data)  # present: unchanged
    assert store.get(key) == data
