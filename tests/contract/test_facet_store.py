"""One contract for every FacetStore adapter. Embedded (SQLite files under the data
directory) today; the AWS adapter is one more entry in STORES, a factory taking a fresh
temporary directory and returning (store, cleanup)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from treadle.adapters.sqlite.facets import SqliteFacetStore
from treadle.domain.errors import InvalidParameter, NotFound
from treadle.facets import FacetStore

A, B = "111111111111", "222222222222"


def _embedded(tmp_path: Path) -> tuple[FacetStore, Callable[[], None]]:
    return SqliteFacetStore(tmp_path / "facets"), lambda: None


STORES: dict[str, Callable[[Path], tuple[FacetStore, Callable[[], None]]]] = {
    "embedded": _embedded,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FacetStore]:
    instance, cleanup = STORES[request.param](tmp_path)
    yield instance
    cleanup()


def _write(store: FacetStore, tenant: str, name: str, rows: int) -> None:
    # What tenant code does through treadle_facets; only the embedded store has a file.
    assert isinstance(store, SqliteFacetStore)
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
