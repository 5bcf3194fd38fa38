"""One contract for every TenantStore adapter.

Adding an adapter is one entry in STORES: a factory taking a fresh temporary directory
and returning (store, cleanup). The DynamoDB adapter runs against moto (`mock_aws`, a
fresh account per test).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from treadle.adapters.aws import create_tables
from treadle.adapters.aws.dynamodb_tenants import DynamoTenantStore, tenant_pk
from treadle.adapters.aws.items import key as dynamo_key
from treadle.adapters.aws.tables import TENANT_SK
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.domain.errors import AlreadyExists, Conflict, NotFound
from treadle.tenancy import stores
from treadle.tenancy.models import KeyStatus, Quotas
from treadle.tenancy.ports import TenantStore

Factory = Callable[[Path], tuple[Any, Callable[[], None]]]


def _sqlite(tmp: Path) -> tuple[Any, Callable[[], None]]:
    store = SqliteTenantStore(tmp / "tenants.sqlite")
    return store, store.close


REGION = "us-east-1"
TABLE = "treadle-test"


def _dynamodb(_tmp: Path) -> tuple[Any, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    client = boto3.client("dynamodb", region_name=REGION)
    create_tables(client, TABLE)
    return DynamoTenantStore(client, TABLE), lambda: mock.__exit__(None, None, None)


def _sqlite_sole_writer(tmp: Path) -> tuple[Any, Callable[[], None]]:
    # One server process: its caches follow its own writes without asking the file.
    store = SqliteTenantStore(tmp / "tenants.sqlite", sole_writer=True)
    return store, store.close


STORES: dict[str, Factory] = {
    "sqlite": _sqlite,
    "sqlite-sole-writer": _sqlite_sole_writer,
    "dynamodb": _dynamodb,
}


def _sqlite_processes(tmp: Path) -> tuple[Any, Any, Callable[[], None]]:
    # Two server processes: each its own connection and caches on one file.
    here = SqliteTenantStore(tmp / "tenants.sqlite")
    there = SqliteTenantStore(tmp / "tenants.sqlite")

    def close() -> None:
        here.close()
        there.close()

    return here, there, close


def _dynamodb_processes(tmp: Path) -> tuple[Any, Any, Callable[[], None]]:
    here, cleanup = _dynamodb(tmp)
    there = DynamoTenantStore(boto3.client("dynamodb", region_name=REGION), TABLE)
    return here, there, cleanup


# Two writers of the same tenants, as two processes of one server (or two Lambdas).
PROCESSES: dict[str, Callable[[Path], tuple[Any, Any, Callable[[], None]]]] = {
    "sqlite-processes": _sqlite_processes,
    "dynamodb": _dynamodb_processes,
}
NOW = 1_700_000_000_000


def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach a real account or an endpoint configured in the environment.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # moto applies a request without isolation from concurrent ones (a failed
    # transaction restores a copy of the table taken before it began, undoing what
    # other threads wrote meanwhile); DynamoDB applies each atomically. Serialize
    # moto's requests so the concurrency tests exercise the adapter, not moto.
    lock = threading.RLock()
    process = BotocoreStubber.process_request

    def serialized(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return process(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", serialized)


@pytest.fixture(params=sorted(STORES))
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TenantStore]:
    _aws_env(monkeypatch)
    instance, cleanup = STORES[request.param](tmp_path)
    yield instance
    cleanup()


def _active(store: TenantStore, account_id: str) -> list[str]:
    return [k.access_key_id for k in store.list_keys(account_id) if k.active]


def test_tenants_get_unique_generated_or_given_account_ids(store: TenantStore) -> None:
    generated = {store.create_tenant(f"t{i}", now_ms=NOW).account_id for i in range(20)}
    assert len(generated) == 20 and all(len(a) == 12 and a.isdigit() for a in generated)
    given = store.create_tenant("acme", now_ms=NOW, account_id="123456789012")
    assert given.account_id == "123456789012" and given.created_ms == NOW
    assert store.get_tenant("123456789012") == given
    with pytest.raises(AlreadyExists):
        store.create_tenant("again", now_ms=NOW, account_id="123456789012")
    with pytest.raises(NotFound):
        store.get_tenant("999999999999")


def test_tenants_list_in_pages(store: TenantStore) -> None:
    ids = sorted(store.create_tenant(f"t{i}", now_ms=NOW).account_id for i in range(5))
    page, marker = store.list_tenants(limit=2)
    seen = [t.account_id for t in page]
    while marker is not None:
        page, marker = store.list_tenants(marker, limit=2)
        seen += [t.account_id for t in page]
    assert seen == ids


def test_disable_and_quotas_persist(store: TenantStore) -> None:
    tenant = store.create_tenant("acme", now_ms=NOW, quotas=Quotas(max_functions=7))
    assert tenant.quotas.max_functions == 7 and not tenant.disabled
    assert store.set_tenant_disabled(tenant.account_id, True).disabled
    assert store.get_tenant(tenant.account_id).disabled
    assert not store.set_tenant_disabled(tenant.account_id, False).disabled
    quotas = Quotas(max_functions=1, max_starts_per_second=0.5)
    assert store.update_quotas(tenant.account_id, quotas).quotas == quotas
    assert store.get_tenant(tenant.account_id).quotas == quotas
    with pytest.raises(NotFound):
        store.set_tenant_disabled("999999999999", True)
    with pytest.raises(NotFound):
        store.update_quotas("999999999999", quotas)


def test_facet_quotas_persist_and_default_for_tenants_stored_before_them(
    store: TenantStore,
) -> None:
    tenant = store.create_tenant("acme", now_ms=NOW)
    assert (tenant.quotas.max_facets, tenant.quotas.max_facet_bytes) == (100, 256 * 1024**2)
    quotas = Quotas(max_facets=3, max_facet_bytes=65536)
    store.update_quotas(tenant.account_id, quotas)
    got = store.get_tenant(tenant.account_id).quotas
    assert (got.max_facets, got.max_facet_bytes) == (3, 65536)
    # Quotas stored as JSON without the facet fields read with their defaults.
    assert Quotas.model_validate_json('{"max_functions": 1}').max_facets == 100


def test_egress_policy_persists_and_defaults_to_none(store: TenantStore) -> None:
    tenant = store.create_tenant("acme", now_ms=NOW)
    assert tenant.egress == "none" and store.get_tenant(tenant.account_id).egress == "none"
    rules = ["api.example.com:443", "10.0.0.0/8", "[2001:db8::1]:80"]
    assert store.update_egress(tenant.account_id, rules).egress == rules
    assert store.get_tenant(tenant.account_id).egress == rules
    assert store.list_tenants()[0][0].egress == rules
    store.update_egress(tenant.account_id, "all")
    assert store.get_tenant(tenant.account_id).egress == "all"
    assert store.get_tenant(tenant.account_id).quotas == Quotas()  # nothing else changed
    with pytest.raises(NotFound):
        store.update_egress("999999999999", "none")


def test_tenants_stored_before_egress_existed_read_as_none(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE tenants (account_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "created_ms INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, "
        "quotas TEXT NOT NULL) WITHOUT ROWID;"
        "INSERT INTO tenants VALUES ('123456789012', 'old', 1, 0, '{}');"
    )
    old.commit()
    old.close()
    store = SqliteTenantStore(path)
    try:
        assert store.get_tenant("123456789012").egress == "none"
        assert store.update_egress("123456789012", "all").egress == "all"
        assert store.get_tenant("123456789012").egress == "all"
    finally:
        store.close()


def test_dynamodb_items_without_egress_read_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    _aws_env(monkeypatch)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_tables(client, TABLE)
        store = DynamoTenantStore(client, TABLE)
        tenant = store.create_tenant("old", now_ms=NOW)
        client.update_item(
            TableName=TABLE,
            Key=dynamo_key(tenant_pk(tenant.account_id), TENANT_SK),
            UpdateExpression="REMOVE egress",
        )
        assert store.get_tenant(tenant.account_id).egress == "none"


def test_keys_are_created_listed_and_switched(store: TenantStore) -> None:
    tenant, first = store.create_tenant_with_key("acme", now_ms=NOW)
    second = store.create_key(tenant.account_id, now_ms=NOW + 1)
    assert store.list_keys(tenant.account_id) == [first, second]
    assert first.secret.get_secret_value() != second.secret.get_secret_value()
    off = store.set_key_status(tenant.account_id, first.access_key_id, KeyStatus.INACTIVE)
    assert off.status is KeyStatus.INACTIVE
    assert _active(store, tenant.account_id) == [second.access_key_id]
    found = store.find_key(first.access_key_id)
    assert found is not None and found[0].status is KeyStatus.INACTIVE
    assert found[0].secret.get_secret_value() == first.secret.get_secret_value()
    with pytest.raises(NotFound):
        store.create_key("999999999999", now_ms=NOW)
    with pytest.raises(NotFound):
        store.list_keys("999999999999")


@pytest.fixture(params=sorted(PROCESSES))
def processes(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TenantStore, TenantStore]]:
    _aws_env(monkeypatch)
    here, there, cleanup = PROCESSES[request.param](tmp_path)
    yield here, there
    cleanup()


def test_a_key_or_tenant_changed_by_another_process_is_not_served_from_cache(
    processes: tuple[TenantStore, TenantStore],
) -> None:
    here, there = processes
    tenant, key = there.create_tenant_with_key("acme", now_ms=NOW)
    found = here.find_key(key.access_key_id)  # now cached here
    assert found is not None and found[0].status is KeyStatus.ACTIVE
    assert not here.get_tenant(tenant.account_id).disabled
    there.set_key_status(tenant.account_id, key.access_key_id, KeyStatus.INACTIVE)
    found = here.find_key(key.access_key_id)
    assert found is not None and found[0].status is KeyStatus.INACTIVE
    there.set_tenant_disabled(tenant.account_id, True)
    assert here.get_tenant(tenant.account_id).disabled


def test_rotation_leaves_exactly_one_active_key(store: TenantStore) -> None:
    tenant, key = store.create_tenant_with_key("acme", now_ms=NOW)
    new = store.rotate_key(tenant.account_id, key.access_key_id, now_ms=NOW + 1)
    assert new.active and new.access_key_id != key.access_key_id
    assert _active(store, tenant.account_id) == [new.access_key_id]
    with pytest.raises(Conflict):  # the old key is inactive now
        store.rotate_key(tenant.account_id, key.access_key_id, now_ms=NOW + 2)
    assert _active(store, tenant.account_id) == [new.access_key_id]


def test_concurrent_rotations_of_one_key_make_one_new_key(store: TenantStore) -> None:
    tenant, key = store.create_tenant_with_key("acme", now_ms=NOW)
    results: list[str] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(8)

    def rotate() -> None:
        barrier.wait()
        try:
            results.append(
                store.rotate_key(tenant.account_id, key.access_key_id, now_ms=NOW).access_key_id
            )
        except Conflict as exc:
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and len(errors) == 7
    assert _active(store, tenant.account_id) == results


def test_one_tenant_never_reaches_anothers_keys(store: TenantStore) -> None:
    a, key_a = store.create_tenant_with_key("a", now_ms=NOW)
    b, key_b = store.create_tenant_with_key("b", now_ms=NOW)
    found = store.find_key(key_a.access_key_id)
    assert found is not None and found[1] == a and found[0].tenant == a.account_id
    found_b = store.find_key(key_b.access_key_id)
    assert found_b is not None and found_b[1] == b
    assert store.find_key("AKIAAAAAAAAAAAAAAAAA") is None
    assert [k.access_key_id for k in store.list_keys(b.account_id)] == [key_b.access_key_id]
    with pytest.raises(NotFound):
        store.set_key_status(b.account_id, key_a.access_key_id, KeyStatus.INACTIVE)
    with pytest.raises(NotFound):
        store.rotate_key(b.account_id, key_a.access_key_id, now_ms=NOW)
    assert _active(store, a.account_id) == [key_a.access_key_id]


def test_concurrent_creates_are_all_kept(store: TenantStore) -> None:
    created: list[str] = []

    def create(i: int) -> None:
        _, key = store.create_tenant_with_key(f"t{i}", now_ms=NOW)
        created.append(key.access_key_id)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(created)) == 16
    assert all(store.find_key(k) is not None for k in created)


# -- SQLite specifics ------------------------------------------------------------------------


def test_taken_generated_ids_are_drawn_again(
    store: TenantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, first_key = store.create_tenant_with_key("first", now_ms=NOW)
    # Attempt 1: the account id is taken. Attempt 2: the access key id is. Attempt 3 works.
    ids = iter([first.account_id, "222222222222", "222222222222"])
    monkeypatch.setattr(stores, "new_account_id", lambda: next(ids))
    real_new_key = stores.new_access_key
    keys = iter([None, first_key.access_key_id])

    def colliding_key(tenant: str, now_ms: int) -> Any:
        made = real_new_key(tenant, now_ms)
        taken = next(keys, None)
        return made if taken is None else made.model_copy(update={"access_key_id": taken})

    monkeypatch.setattr(stores, "new_access_key", colliding_key)
    tenant, key = store.create_tenant_with_key("second", now_ms=NOW)
    assert next(ids, None) is None and next(keys, "done") == "done"  # three attempts made
    assert tenant.account_id == "222222222222" and key.access_key_id != first_key.access_key_id
    found = store.find_key(first_key.access_key_id)
    assert found is not None and found[1] == first  # the colliding key was not overwritten
    assert [t.account_id for t in store.list_tenants()[0]] == sorted(
        [first.account_id, "222222222222"]
    )


def test_the_sqlite_file_is_private_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "db" / "tenants.sqlite"
    store = SqliteTenantStore(path)
    tenant, key = store.create_tenant_with_key("acme", now_ms=NOW)
    for name in os.listdir(path.parent):
        assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store.close()
    os.chmod(path, 0o644)
    reopened = SqliteTenantStore(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert reopened.find_key(key.access_key_id) == (key, tenant)
    reopened.close()


# -- DynamoDB specifics ----------------------------------------------------------------------


@pytest.fixture
def dynamo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DynamoTenantStore]:
    _aws_env(monkeypatch)
    instance, cleanup = _dynamodb(tmp_path)
    yield instance
    cleanup()


def test_dynamodb_find_key_reads_two_items_by_key(dynamo: DynamoTenantStore) -> None:
    tenant, key = dynamo.create_tenant_with_key("acme", now_ms=NOW)
    calls: list[str] = []
    client = dynamo._client
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    assert dynamo.find_key(key.access_key_id) == (key, tenant)
    assert calls == ["GetItem", "GetItem"]  # no Query, no Scan, on every request
