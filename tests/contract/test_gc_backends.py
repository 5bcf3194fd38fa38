"""The garbage collector (`app/gc.py`) over each backend's own stores: SQLite files
(embedded) and one DynamoDB table (AWS, moto). The policy round-trips through each
tenant store; a dry run removes nothing; a run removes the versions beyond the newest
kept but never an aliased one nor one a live execution is pinned to; each removal's
audit record is written with it and the counters move."""

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
from tests.contract.test_execution_store import _aws_env, _close, _start

from support.fakes import ManualClock
from treadle.adapters.aws import create_tables
from treadle.adapters.aws.dynamodb_audit import DynamoAuditLog
from treadle.adapters.aws.dynamodb_executions import DynamoExecutionStore
from treadle.adapters.aws.dynamodb_functions import DynamoFunctionStore
from treadle.adapters.aws.dynamodb_last_used import DynamoLastUsed
from treadle.adapters.aws.dynamodb_refs import DynamoRefStore
from treadle.adapters.aws.dynamodb_tenants import DynamoTenantStore
from treadle.adapters.local.basics import RandomIds
from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.sqlite.audit import SqliteAuditLog
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.facets import SqliteFacetStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.last_used import SqliteLastUsed
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.app.gc import GarbageCollector
from treadle.artifacts import ArtifactService, Repositories
from treadle.domain.audit import AuditLog, AuditQuery
from treadle.domain.gc import GcPolicy
from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import Alias, ExecutionStore, FunctionStore, FunctionVersion
from treadle.tenancy.admin import TenantAdmin

TABLE = "treadle-test"
BUCKET = "treadle-payloads"
REGION = "us-east-1"


@dataclass
class World:
    tenants: TenantAdmin
    functions: Any  # FunctionStore and AliasStore
    executions: ExecutionStore
    audit: AuditLog
    gc: GarbageCollector
    tenant: str = ""


def _world(
    tmp: Path,
    clock: ManualClock,
    tenants: TenantAdmin,
    functions: Any,
    executions: ExecutionStore,
    refs: Any,
    last_used: Any,
    audit: AuditLog,
) -> World:
    gc = GarbageCollector(
        tenants=tenants,
        functions=functions,
        aliases=functions,
        refs=refs,
        artifacts=ArtifactService(Repositories(LocalObjectStore(tmp / "objects"), refs)),
        facets=SqliteFacetStore(tmp / "facets"),
        last_used=last_used,
        clock=clock,
        ids=RandomIds(),
        audit=audit,
    )
    return World(tenants, functions, executions, audit, gc)


def _sqlite(tmp: Path, clock: ManualClock) -> tuple[World, Callable[[], None]]:
    db = Database(tmp / "treadle.db")
    tenant_store = SqliteTenantStore(tmp / "tenants.db")
    functions = SqliteFunctionStore(db)
    world = _world(
        tmp,
        clock,
        TenantAdmin(tenant_store, clock),
        functions,
        SqliteExecutionStore(db),
        SqliteRefStore(tmp / "refs.db"),
        SqliteLastUsed(db),
        SqliteAuditLog([db.file, tenant_store.file], now_ms=clock.now_ms),
    )
    return world, db.close


def _dynamodb(tmp: Path, clock: ManualClock) -> tuple[World, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    create_tables(dynamodb, TABLE)
    s3.create_bucket(Bucket=BUCKET)
    world = _world(
        tmp,
        clock,
        TenantAdmin(DynamoTenantStore(dynamodb, TABLE), clock),
        DynamoFunctionStore(dynamodb, TABLE),
        DynamoExecutionStore(dynamodb, TABLE, s3_client=s3, bucket=BUCKET),
        DynamoRefStore(dynamodb, TABLE),
        DynamoLastUsed(dynamodb, TABLE),
        DynamoAuditLog(dynamodb, TABLE, now_ms=clock.now_ms),
    )
    return world, lambda: mock.__exit__(None, None, None)


BACKENDS = {"sqlite": _sqlite, "dynamodb": _dynamodb}


@pytest.fixture(params=sorted(BACKENDS))
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    _aws_env(monkeypatch)
    clock = ManualClock()
    instance, cleanup = BACKENDS[request.param](tmp_path, clock)
    instance.tenant = instance.tenants.create_tenant("gc")[0].account_id
    yield instance
    cleanup()


def _function_with_versions(w: World, versions: int) -> None:
    for i in range(versions + 1):
        w.functions.put_latest(
            FunctionVersion(
                tenant=w.tenant,
                function_name="f",
                version="$LATEST",
                function_arn=f"arn:aws:lambda:{REGION}:{w.tenant}:function:f",
                handler="app.handler",
                code_sha256=f"c{i}",
                code_size=10 * (i + 1),
                code_key=f"{i:064x}",
                last_modified_ms=1,
                revision_id=uuid.uuid4().hex,
            ),
            create=i == 0,
        )
        if i < versions:
            w.functions.publish(w.tenant, "f", None)


def _versions(functions: FunctionStore, tenant: str) -> list[str]:
    return [v.version for v in functions.list_versions(tenant, "f", None, 100)[0]]


def test_the_policy_round_trips_through_the_tenant_store(world: World) -> None:
    assert world.tenants.get_tenant(world.tenant).quotas.gc.empty
    policy = GcPolicy(keep_versions=3, idle_repo_days=30)
    world.tenants.update_quotas(world.tenant, {"gc": policy})
    assert world.tenants.get_tenant(world.tenant).quotas.gc == policy
    world.tenants.update_quotas(world.tenant, {"max_functions": 7})  # other quotas: kept
    stored = world.tenants.get_tenant(world.tenant).quotas
    assert (stored.gc, stored.max_functions) == (policy, 7)


def test_a_run_keeps_the_newest_the_aliased_and_the_pinned_versions(world: World) -> None:
    _function_with_versions(world, 5)
    world.functions.create_alias(
        Alias(
            tenant=world.tenant,
            function_name="f",
            name="live",
            function_arn=f"arn:aws:lambda:{REGION}:{world.tenant}:function:f",
            function_version="2",
            revision_id="r",
        )
    )
    run = _start(world.executions, "waiting", function="f", version="1", tenant=world.tenant)
    world.tenants.update_quotas(world.tenant, {"gc": GcPolicy(keep_versions=1)})

    plan = world.gc.run(world.tenant, dry_run=True)
    assert sorted(r.resource for r in plan.removed) == ["f:3", "f:4"]
    assert _versions(world.functions, world.tenant) == ["$LATEST", "1", "2", "3", "4", "5"]

    before = world.functions.counts(world.tenant)
    done = world.gc.run(world.tenant, dry_run=False)
    assert sorted(r.resource for r in done.removed) == ["f:3", "f:4"]
    assert _versions(world.functions, world.tenant) == ["$LATEST", "1", "2", "5"]
    after = world.functions.counts(world.tenant)
    assert (before.versions - after.versions, before.code_bytes - after.code_bytes) == (2, 30 + 40)
    records = world.audit.query(AuditQuery(tenant=world.tenant, action="CollectFunctionVersion"))
    assert sorted(r.resource[-1] for r in records.records) == ["3", "4"]

    _close(world.executions, run.arn, ExecutionStatus.SUCCEEDED)
    assert [r.resource for r in world.gc.run(world.tenant, dry_run=False).removed] == ["f:1"]
