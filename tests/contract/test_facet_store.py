"""One contract for every FacetStore adapter, each an entry in STORES (a factory taking a
fresh temporary directory and returning (store, cleanup)): embedded (SQLite files under
the data directory) and EFS (the same files on the mounted file system, here a local
directory standing in for the mount, with per-tenant access points on moto)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from treadle.adapters.aws.efs_facets import EfsFacetStore, tenant_uid
from treadle.adapters.sqlite.facets import SqliteFacetStore
from treadle.domain.errors import InvalidParameter, NotFound
from treadle.facets import FacetStore

A, B = "111111111111", "222222222222"
REGION = "eu-west-1"


def _embedded(tmp_path: Path) -> tuple[FacetStore, Callable[[], None]]:
    return SqliteFacetStore(tmp_path / "facets"), lambda: None


def _efs(tmp_path: Path) -> tuple[FacetStore, Callable[[], None]]:
    store, _, _, stop = _efs_parts(tmp_path)
    return store, stop


def _efs_parts(tmp_path: Path) -> tuple[EfsFacetStore, Any, str, Callable[[], None]]:
    mock = mock_aws()
    mock.start()
    client = boto3.client(
        "efs",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        endpoint_url=None,
    )
    fs = client.create_file_system(CreationToken="facets", Encrypted=True)["FileSystemId"]
    store = EfsFacetStore(client, file_system_id=fs, mount_dir=tmp_path / "mnt", stage="test")
    return store, client, fs, mock.stop


STORES: dict[str, Callable[[Path], tuple[FacetStore, Callable[[], None]]]] = {
    "embedded": _embedded,
    "efs": _efs,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FacetStore]:
    instance, cleanup = STORES[request.param](tmp_path)
    yield instance
    cleanup()


def _write(store: FacetStore, tenant: str, name: str, rows: int) -> None:
    # What tenant code does through treadle_facets, on the file the store made.
    assert isinstance(store, SqliteFacetStore | EfsFacetStore)
    db = sqlite3.connect(store.tenant_dir(tenant) / name / "db.sqlite")
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS t(x)")
        db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
    db.close()


def test_a_facet_is_made_once_and_then_exists(store: FacetStore) -> None:
    assert not store.exists(A, "orders")
    assert store.create(A, "orders") is True
    assert store.create(A, "orders") is False
    assert store.exists(A, "orders") and store.count(A) == 1


def test_facets_are_per_tenant(store: FacetStore) -> None:
    store.create(A, "orders")
    store.create(B, "other")
    assert [f.name for f in store.list(A)] == ["orders"]
    assert [f.name for f in store.list(B)] == ["other"]
    assert not store.exists(B, "orders")
    with pytest.raises(NotFound):
        store.export(B, "orders")
    assert store.delete(B, "orders") is False
    assert store.exists(A, "orders")


def test_a_listing_shows_size_and_last_use(store: FacetStore) -> None:
    store.create(A, "orders")
    _write(store, A, "orders", 1000)
    (info,) = store.list(A)
    assert info.name == "orders" and info.size_bytes >= 4096 and info.last_used_ms > 0
    assert store.size(A, "orders") == info.size_bytes


def test_an_export_is_one_consistent_sqlite_file_even_while_written(
    store: FacetStore, tmp_path: Path
) -> None:
    store.create(A, "orders")
    _write(store, A, "orders", 10)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            _write(store, A, "orders", 10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        copies = [store.export(A, "orders") for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    for i, data in enumerate(copies):
        path = tmp_path / f"copy{i}.sqlite"
        path.write_bytes(data)
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] % 10 == 0  # whole commits
        db.close()


def test_a_deleted_facet_is_gone_at_once(store: FacetStore) -> None:
    store.create(A, "orders")
    assert store.delete(A, "orders") is True
    assert not store.exists(A, "orders") and store.list(A) == []
    with pytest.raises(NotFound):
        store.export(A, "orders")
    assert store.delete(A, "orders") is False
    assert store.create(A, "orders") is True  # the name is free again, empty


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "a..b", "", "x" * 129])
def test_a_name_that_is_not_a_facet_name_is_refused(store: FacetStore, name: str) -> None:
    with pytest.raises(InvalidParameter):
        store.create(A, name)
    with pytest.raises(InvalidParameter):
        store.export(A, name)


def test_on_a_shared_directory_only_old_hidden_directories_are_swept(tmp_path: Path) -> None:
    store = SqliteFacetStore(tmp_path / "facets")
    store.create(A, "orders")
    old, fresh = store.tenant_dir(A) / ".orders.old", store.tenant_dir(A) / ".orders.new"
    old.mkdir()
    fresh.mkdir()  # another process's facet in the making
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    SqliteFacetStore(tmp_path / "facets", sweep_older_than_s=3600)
    assert sorted(os.listdir(store.tenant_dir(A))) == [".orders.new", "orders"]


def test_facets_half_made_by_a_killed_platform_are_swept(tmp_path: Path) -> None:
    store = SqliteFacetStore(tmp_path / "facets")
    store.create(A, "orders")
    (store.tenant_dir(A) / ".orders.abc123").mkdir()
    store = SqliteFacetStore(tmp_path / "facets")
    assert sorted(os.listdir(store.tenant_dir(A))) == ["orders"]


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership changes need root")
def test_as_root_the_tenant_owns_its_facets_and_not_their_directory(tmp_path: Path) -> None:
    uid = 0x7123_4567
    store = SqliteFacetStore(tmp_path / "facets", owner=lambda _tenant: uid)
    store.create(A, "orders")
    tenant_dir = store.tenant_dir(A).stat()
    assert (tenant_dir.st_uid, tenant_dir.st_gid, tenant_dir.st_mode & 0o777) == (0, uid, 0o750)
    facet = store.tenant_dir(A) / "orders"
    assert {p.stat().st_uid for p in [facet, *facet.iterdir()]} == {uid}
    store.export(A, "orders")  # as root: files SQLite makes keep the database's owner
    assert {p.stat().st_uid for p in [facet, *facet.iterdir()]} == {uid}


# -- EFS only: what a tenant Lambda mounts ------------------------------------------------


@pytest.fixture
def efs(tmp_path: Path) -> Iterator[tuple[EfsFacetStore, Any, str]]:
    store, client, fs, stop = _efs_parts(tmp_path)
    yield store, client, fs
    stop()


def test_on_efs_each_tenant_mounts_only_its_own_directory_as_its_own_uid(
    efs: tuple[EfsFacetStore, Any, str], tmp_path: Path
) -> None:
    store, client, fs = efs
    store.create(A, "orders")
    store.create(A, "other")
    store.create(B, "orders")
    points = client.describe_access_points(FileSystemId=fs)["AccessPoints"]
    assert len(points) == 2  # one per tenant, not per facet
    by_arn = {p["AccessPointArn"]: p for p in points}
    a, b = by_arn[store.access_point(A)], by_arn[store.access_point(B)]
    assert a["RootDirectory"]["Path"] == f"/facets/{A}"
    assert b["RootDirectory"]["Path"] == f"/facets/{B}"
    assert a["PosixUser"]["Uid"] == tenant_uid(A) != b["PosixUser"]["Uid"]
    # Another platform container finds the same access point rather than a second one.
    again = EfsFacetStore(client, file_system_id=fs, mount_dir=tmp_path / "mnt", stage="test")
    assert again.access_point(B) == store.access_point(B)
    assert len(client.describe_access_points(FileSystemId=fs)["AccessPoints"]) == 2


def test_on_efs_a_facet_uses_a_rollback_journal_not_wal(
    efs: tuple[EfsFacetStore, Any, str],
) -> None:
    store, _, _ = efs
    store.create(A, "orders")
    db = sqlite3.connect(store.tenant_dir(A) / "orders" / "db.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()


def test_on_efs_a_refused_name_makes_no_access_point(efs: tuple[EfsFacetStore, Any, str]) -> None:
    store, client, fs = efs
    with pytest.raises(InvalidParameter):
        store.create(A, "../" + B)
    assert client.describe_access_points(FileSystemId=fs)["AccessPoints"] == []


def test_on_efs_a_process_without_the_mount_still_finds_and_makes_access_points(
    efs: tuple[EfsFacetStore, Any, str], tmp_path: Path
) -> None:
    # The orchestrator deploys tenant functions (their access points) outside the VPC:
    # it has no mount, and the directory must not be touched until a file is wanted.
    store, client, fs = efs
    unmounted = tmp_path / "not-mounted"
    deployer = EfsFacetStore(client, file_system_id=fs, mount_dir=unmounted, stage="test")
    arn = deployer.access_point(A)
    assert arn == store.access_point(A)
    assert not unmounted.exists()
    assert deployer.list(A) == []  # the first file operation opens the directory
    assert unmounted.is_dir()
