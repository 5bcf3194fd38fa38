"""One contract for the audit log on both backends: SQLite (embedded) and DynamoDB (AWS).

A backend here is the reader (`AuditLog`) with the stores that write records in their
own transactions: the function store and the tenant store. On SQLite those live in two
files, and the reader merges them; on DynamoDB they share the table. DynamoDB runs
against moto (`mock_aws`, a fresh account per test).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from test_execution_store import _start

from treadle.adapters.aws import create_tables
from treadle.adapters.aws.dynamodb_audit import DynamoAuditLog
from treadle.adapters.aws.dynamodb_executions import DynamoExecutionStore
from treadle.adapters.aws.dynamodb_functions import DynamoFunctionStore
from treadle.adapters.aws.dynamodb_refs import DynamoRefStore
from treadle.adapters.aws.dynamodb_tenants import DynamoTenantStore
from treadle.adapters.sqlite.audit import SqliteAuditLog
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.artifacts.ports import ZERO_SHA, RefConflict, RefStore, RefUpdate
from treadle.domain.audit import (
    DAY_MS,
    AuditLog,
    AuditQuery,
    AuditRecord,
    PrincipalKind,
    record_id,
)
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    Conflict,
    NotFound,
    PreconditionFailed,
)
from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import Commit, ExecutionStore, FunctionStore, FunctionVersion
from treadle.tenancy.models import KeyStatus, Quotas
from treadle.tenancy.ports import TenantStore

T = "123456789012"
OTHER = "210987654321"
REGION = "us-east-1"
TABLE = "treadle-test"
NOW = 1_800_000_000_000
RETENTION_DAYS = 90


@dataclass
class Backend:
    log: AuditLog
    functions: FunctionStore
    tenants: TenantStore
    executions: ExecutionStore
    refs: RefStore
    clock: list[int]  # [now ms]: tests move it


def _sqlite(tmp: Path, clock: list[int]) -> tuple[Backend, Callable[[], None]]:
    db = Database(tmp / "treadle.db")
    tenants = SqliteTenantStore(tmp / "tenants.db")
    refs = SqliteRefStore(tmp / "refs.db")
    log = SqliteAuditLog(
        [db.file, tenants.file, refs.file], now_ms=lambda: clock[0], retention_days=RETENTION_DAYS
    )

    def close() -> None:
        db.close()
        tenants.close()
        refs.close()

    backend = Backend(log, SqliteFunctionStore(db), tenants, SqliteExecutionStore(db), refs, clock)
    return backend, close


def _dynamodb(_tmp: Path, clock: list[int]) -> tuple[Backend, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    client = boto3.client("dynamodb", region_name=REGION)
    create_tables(client, TABLE)
    log = DynamoAuditLog(client, TABLE, now_ms=lambda: clock[0], retention_days=RETENTION_DAYS)
    backend = Backend(
        log,
        DynamoFunctionStore(client, TABLE, audit_retention_days=RETENTION_DAYS),
        DynamoTenantStore(client, TABLE, audit_retention_days=RETENTION_DAYS),
        DynamoExecutionStore(client, TABLE, audit_retention_days=RETENTION_DAYS),
        DynamoRefStore(client, TABLE, audit_retention_days=RETENTION_DAYS),
        clock,
    )
    return backend, lambda: mock.__exit__(None, None, None)


BACKENDS = {"sqlite": _sqlite, "dynamodb": _dynamodb}


@pytest.fixture(params=sorted(BACKENDS))
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    instance, cleanup = BACKENDS[request.param](tmp_path, [NOW])
    yield instance
    cleanup()


_seq = iter(range(10**9))


def _record(
    action: str = "CreateFunction",
    *,
    tenant: str = T,
    time_ms: int = NOW,
    resource: str = "arn:aws:lambda:us-east-1:123456789012:function:fn",
    outcome: str = "succeeded",
) -> AuditRecord:
    return AuditRecord(
        id=record_id(time_ms, f"{next(_seq):08d}{uuid.uuid4().hex[:8]}"),
        time_ms=time_ms,
        access_key_id="AKIAEXAMPLE",
        principal=PrincipalKind.TENANT_KEY,
        tenant=tenant,
        action=action,
        resource=resource,
        outcome=outcome,
        source_address="192.0.2.7",
    )


def _fn(name: str = "fn", tenant: str = T) -> FunctionVersion:
    return FunctionVersion(
        tenant=tenant,
        function_name=name,
        version="$LATEST",
        function_arn=f"arn:aws:lambda:{REGION}:{tenant}:function:{name}",
        handler="app.handler",
        code_sha256="c2hhMjU2",
        code_size=123,
        code_key="ab" * 32,
        last_modified_ms=NOW,
        revision_id=uuid.uuid4().hex,
    )


def _all(log: AuditLog, **filters: Any) -> list[AuditRecord]:
    return log.query(AuditQuery(**filters)).records


# -- written with the change -----------------------------------------------------------


def test_a_function_created_with_its_record_is_listed_with_that_record(
    backend: Backend,
) -> None:
    record = _record()
    backend.functions.put_latest(_fn(), create=True, audit=record)
    assert backend.functions.get(T, "fn").function_name == "fn"
    assert _all(backend.log) == [record]


def test_a_refused_create_writes_no_record_of_success(backend: Backend) -> None:
    backend.functions.put_latest(_fn(), create=True)
    with pytest.raises(AlreadyExists):
        backend.functions.put_latest(_fn(), create=True, audit=_record())
    assert _all(backend.log) == []


def test_an_update_refused_on_a_moved_revision_writes_no_record(backend: Backend) -> None:
    fn = _fn()
    backend.functions.put_latest(fn, create=True)
    with pytest.raises(PreconditionFailed):
        backend.functions.put_latest(
            _fn(), create=False, expected_revision="not-it", audit=_record("UpdateFunction")
        )
    with pytest.raises(NotFound):
        backend.functions.put_latest(_fn("absent"), create=False, audit=_record("Update"))
    assert _all(backend.log) == []
    ok = _record("UpdateFunctionConfiguration", time_ms=NOW + 1)
    backend.functions.put_latest(_fn(), create=False, expected_revision=fn.revision_id, audit=ok)
    assert _all(backend.log) == [ok]


def test_a_publish_and_a_delete_carry_their_records(backend: Backend) -> None:
    backend.functions.put_latest(_fn(), create=True)
    published = _record("PublishVersion", time_ms=NOW + 1)
    assert backend.functions.publish(T, "fn", None, audit=published).version == "1"
    deleted = _record("DeleteFunction", time_ms=NOW + 2)
    backend.functions.delete(T, "fn", audit=deleted)
    with pytest.raises(NotFound):
        backend.functions.delete(T, "fn", audit=_record("DeleteFunction", time_ms=NOW + 3))
    assert _all(backend.log) == [deleted, published]


def test_tenant_and_key_changes_carry_their_records(backend: Backend) -> None:
    store = backend.tenants
    tenant, key = store.create_tenant_with_key("acme", now_ms=NOW, audit=_record("CreateTenant"))
    account = tenant.account_id
    store.update_quotas(
        account, Quotas(max_functions=3), audit=_record("UpdateTenant", tenant=account)
    )
    store.set_tenant_disabled(account, True, audit=_record("UpdateTenant", tenant=account))
    new_key = store.create_key(account, now_ms=NOW, audit=_record("CreateKey", tenant=account))
    store.rotate_key(
        account, key.access_key_id, now_ms=NOW, audit=_record("RotateKey", tenant=account)
    )
    store.set_key_status(
        account,
        new_key.access_key_id,
        KeyStatus.INACTIVE,
        audit=_record("UpdateKey", tenant=account),
    )
    records = _all(backend.log)
    assert [r.action for r in records] == [
        "UpdateKey",
        "RotateKey",
        "CreateKey",
        "UpdateTenant",
        "UpdateTenant",
        "CreateTenant",
    ]
    # The store names what it created: the new tenant, the new key.
    assert {r.tenant for r in records} == {account}
    assert records[-1].resource == f"/v1/tenants/{account}"
    assert records[2].resource.endswith(f"/keys/{new_key.access_key_id}")


def test_refused_tenant_and_key_changes_write_no_record(backend: Backend) -> None:
    store = backend.tenants
    tenant, key = store.create_tenant_with_key("acme", now_ms=NOW)
    with pytest.raises(NotFound):
        store.update_quotas(OTHER, Quotas(), audit=_record("UpdateTenant"))
    with pytest.raises(NotFound):
        store.create_key(OTHER, now_ms=NOW, audit=_record("CreateKey"))
    store.set_key_status(tenant.account_id, key.access_key_id, KeyStatus.INACTIVE)
    with pytest.raises(Conflict):  # an inactive key is not rotated
        store.rotate_key(tenant.account_id, key.access_key_id, now_ms=NOW, audit=_record())
    with pytest.raises(NotFound):  # nor is another tenant's touched
        store.set_key_status(OTHER, key.access_key_id, KeyStatus.ACTIVE, audit=_record())
    assert _all(backend.log) == []


def test_an_execution_change_and_its_delete_carry_their_records(backend: Backend) -> None:
    store = backend.executions
    ex = _start(store, "run1")
    loaded = store.load(ex.arn).execution
    stale = loaded.model_copy()
    loaded.status = ExecutionStatus.STOPPED
    stopped = _record("StopExecution", resource=ex.arn)
    store.commit(Commit(execution=loaded, audit=stopped))
    # A change computed from the old version loses its race, and its record with it.
    with pytest.raises(ConcurrentModification):
        store.commit(Commit(execution=stale, audit=_record("PauseExecution", time_ms=NOW + 1)))
    deleted = _record("DeleteExecution", time_ms=NOW + 2, resource=ex.arn)
    store.delete(ex.arn, audit=deleted)
    with pytest.raises(NotFound):
        store.get(ex.arn)
    assert _all(backend.log) == [deleted, stopped]


def test_a_push_carries_its_record_with_the_ref_update(backend: Backend) -> None:
    backend.refs.create_repo(T, "app")
    main, tip = b"refs/heads/main", b"a" * 40
    pushed = _record("Push", resource=f"/git/{T}/app.git/git-receive-pack")
    backend.refs.compare_and_swap(T, "app", [RefUpdate(main, ZERO_SHA, tip)], audit=pushed)
    with pytest.raises(RefConflict):  # a push from a stale tip changes nothing
        backend.refs.compare_and_swap(
            T, "app", [RefUpdate(main, b"b" * 40, b"c" * 40)], audit=_record("Push")
        )
    assert backend.refs.get_refs(T, "app") == {main: tip}
    assert _all(backend.log) == [pushed]


# -- reading -----------------------------------------------------------------------------


def test_records_of_every_store_are_merged_newest_first(backend: Backend) -> None:
    first = _record("CreateFunction", time_ms=NOW - 3)
    backend.functions.put_latest(_fn(), create=True, audit=first)
    second = _record("CreateTenant", time_ms=NOW - 2)
    tenant = backend.tenants.create_tenant("acme", now_ms=NOW, account_id=T, audit=second)
    third = _record("PublishVersion", time_ms=NOW - 1)
    backend.functions.publish(T, "fn", None, audit=third)
    refused = _record("DeleteFacet", outcome="ResourceNotFoundException")
    backend.log.append(refused)
    assert tenant.account_id == T
    assert [r.id for r in _all(backend.log)] == [refused.id, third.id, second.id, first.id]


def test_filters_select_by_tenant_action_resource_outcome_and_time(backend: Backend) -> None:
    a = _record("CreateFunction", time_ms=NOW - 40, resource="arn:x:function:alpha")
    b = _record("DeleteFunction", time_ms=NOW - 30, resource="arn:x:function:beta")
    c = _record("CreateFunction", time_ms=NOW - 20, tenant=OTHER, resource="arn:y:function:a")
    d = _record("CreateFunction", time_ms=NOW - 10, outcome="AccessDeniedException")
    for r in (a, b, c, d):
        backend.log.append(r)
    assert _all(backend.log, tenant=T) == [d, b, a]
    assert _all(backend.log, tenant=OTHER) == [c]
    assert _all(backend.log, action="CreateFunction") == [d, c, a]
    assert _all(backend.log, resource_prefix="arn:x:function:b") == [b]
    assert _all(backend.log, outcome="AccessDeniedException") == [d]
    assert _all(backend.log, since_ms=NOW - 30, until_ms=NOW - 10) == [c, b]
    assert _all(backend.log, tenant=T, action="CreateFunction", outcome="succeeded") == [a]


def test_pages_walk_every_record_once_newest_first(backend: Backend) -> None:
    written = [_record(time_ms=NOW - 100 + i // 3) for i in range(25)]
    for r in written:
        backend.log.append(r)
    seen: list[AuditRecord] = []
    cursor: str | None = None
    while True:
        page = backend.log.query(AuditQuery(limit=7, before_id=cursor))
        assert len(page.records) <= 7
        seen += page.records
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(written, key=lambda r: r.id, reverse=True)


def test_records_past_the_retention_are_not_listed(backend: Backend) -> None:
    old = _record(time_ms=NOW - RETENTION_DAYS * DAY_MS - 1)
    recent = _record(time_ms=NOW - RETENTION_DAYS * DAY_MS + 1000)
    backend.log.append(old)
    backend.log.append(recent)
    assert _all(backend.log) == [recent]
    assert _all(backend.log, since_ms=0) == [recent]
    backend.log.purge(NOW - RETENTION_DAYS * DAY_MS)
    assert _all(backend.log) == [recent]
    backend.clock[0] = NOW + 2 * DAY_MS  # the recent one ages out too
    assert _all(backend.log) == []


def test_the_sqlite_purge_deletes_what_it_hides(tmp_path: Path) -> None:
    backend, close = _sqlite(tmp_path, [NOW])
    try:
        old = _record(time_ms=NOW - RETENTION_DAYS * DAY_MS - 1)
        backend.functions.put_latest(_fn(), create=True, audit=old)
        backend.log.append(_record(time_ms=NOW))
        assert isinstance(backend.log, SqliteAuditLog)
        assert backend.log.purge_expired() == 1
        assert backend.log.purge_expired() == 0
    finally:
        close()
