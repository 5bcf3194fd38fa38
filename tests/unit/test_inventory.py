"""The inventory over real embedded stores: every kind of every tenant, paged; last
uses recorded at most once a minute; the idle filter (docs/operating.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.fakes import ManualClock
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.facets import SqliteFacetStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.last_used import SqliteLastUsed
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.app.inventory import DAY_MS, InventoryService, Resource
from treadle.app.last_used import UseRecorder
from treadle.domain.errors import InvalidParameter, NotFound
from treadle.domain.models import Execution, ExecutionStatus
from treadle.domain.ports import Commit, FunctionVersion
from treadle.domain.usage import EXECUTION, FACET, FUNCTION_VERSION, KINDS, REPOSITORY
from treadle.tenancy.admin import TenantAdmin


@dataclass
class World:
    clock: ManualClock
    tenants: TenantAdmin
    functions: SqliteFunctionStore
    executions: SqliteExecutionStore
    refs: SqliteRefStore
    facets: SqliteFacetStore
    last_used: SqliteLastUsed
    recorder: UseRecorder
    inventory: InventoryService


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = ManualClock()
    db = Database(tmp_path / "treadle.db")
    tenants = TenantAdmin(SqliteTenantStore(tmp_path / "tenants.db"), clock)
    functions, executions = SqliteFunctionStore(db), SqliteExecutionStore(db)
    refs = SqliteRefStore(tmp_path / "refs.db")
    facets = SqliteFacetStore(tmp_path / "facets")
    last_used = SqliteLastUsed(db)
    inventory = InventoryService(
        tenants=tenants,
        functions=functions,
        refs=refs,
        facets=facets,
        executions=executions,
        last_used=last_used,
        clock=clock,
    )
    yield World(
        clock,
        tenants,
        functions,
        executions,
        refs,
        facets,
        last_used,
        UseRecorder(last_used, clock),
        inventory,
    )
    db.close()


def _function(w: World, tenant: str, name: str, size: int) -> None:
    w.functions.put_latest(
        FunctionVersion(
            tenant=tenant,
            function_name=name,
            version="$LATEST",
            function_arn=f"arn:aws:lambda:us-east-1:{tenant}:function:{name}",
            handler="app.handler",
            code_sha256="c2hh",
            code_size=size,
            code_key="ab" * 32,
            last_modified_ms=w.clock.now_ms(),
            revision_id=uuid.uuid4().hex,
        ),
        create=True,
    )


def _execution(w: World, tenant: str, function: str, name: str) -> Execution:
    ex = Execution(
        arn=f"arn:aws:lambda:us-east-1:{tenant}:function:{function}:$LATEST"
        f"/durable-execution/{name}/{name}",
        tenant=tenant,
        function_name=function,
        version="$LATEST",
        name=name,
        exec_id=name,
        status=ExecutionStatus.RUNNING,
        input_payload=None,
        input_hash="h",
        start_ms=w.clock.now_ms(),
        execution_timeout_s=60,
        retention_days=1,
        history_bytes=42,
    )
    w.executions.create(Commit(execution=ex))
    return ex


def _everything(w: World, **query: Any) -> list[Resource]:
    out, marker = w.inventory.page(limit=1000, **query)
    assert marker is None
    return out


@pytest.fixture
def two_tenants(world: World) -> tuple[str, str]:
    a = world.tenants.create_tenant("a")[0].account_id
    b = world.tenants.create_tenant("b")[0].account_id
    _function(world, a, "f", 100)
    world.functions.publish(a, "f", None)
    _function(world, a, "g", 7)
    for i in range(3):
        _execution(world, a, "f", f"run{i}")
    _execution(world, a, "g", "other")
    world.refs.create_repo(a, "site")
    world.facets.create(a, "notes")
    _function(world, b, "h", 1)
    _execution(world, b, "h", "theirs")
    return a, b


def test_every_kind_of_every_tenant_is_listed_with_size_and_times(
    world: World, two_tenants: tuple[str, str]
) -> None:
    a, b = two_tenants
    listed = _everything(world)
    kinds = {(r.tenant, r.kind, r.id) for r in listed}
    assert (a, FUNCTION_VERSION, "f:$LATEST") in kinds and (a, FUNCTION_VERSION, "f:1") in kinds
    assert (a, REPOSITORY, "site") in kinds and (a, FACET, "notes") in kinds
    assert len([r for r in listed if r.kind == EXECUTION and r.tenant == a]) == 4
    assert (b, EXECUTION) in {(r.tenant, r.kind) for r in listed}
    assert len(listed) == 3 + 1 + 1 + 4 + 1 + 1
    version = next(r for r in listed if r.id == "f:1")
    assert (version.size_bytes, version.created_ms) == (100, world.clock.now_ms())
    run = next(r for r in listed if r.kind == EXECUTION)
    assert (run.size_bytes, run.created_ms) == (42, world.clock.now_ms())
    assert [r for r in listed if r.tenant == b] == _everything(world, tenant=b)
    assert {r.kind for r in _everything(world, kind=FACET)} == {FACET}


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_pages_of_any_size_list_each_resource_once(
    world: World, two_tenants: tuple[str, str], limit: int
) -> None:
    seen: list[Resource] = []
    marker = None
    for _ in range(100):
        page, marker = world.inventory.page(limit=limit, marker=marker)
        assert len(page) <= limit
        seen.extend(page)
        if marker is None:
            break
    assert seen == _everything(world)


def test_uses_are_recorded_once_a_minute_and_idle_days_keeps_only_the_unused(
    world: World, two_tenants: tuple[str, str]
) -> None:
    a, _ = two_tenants
    world.recorder.used(a, FUNCTION_VERSION, "f:1")
    first = world.clock.now_ms()
    world.clock.advance(30_000)
    world.recorder.used(a, FUNCTION_VERSION, "f:1")  # within the minute: nothing written
    assert world.last_used.last_used(a, FUNCTION_VERSION) == {"f:1": first}
    world.refs.create_repo(a, "never-used")
    _everything(world, kind=REPOSITORY)  # first seen now: idle from here
    world.clock.advance(10 * DAY_MS)
    world.recorder.used(a, REPOSITORY, "site")
    world.recorder.used(a, FACET, "notes")
    idle = {(r.kind, r.id) for r in _everything(world, tenant=a, idle_days=5)}
    # Made or last used ten days ago; the repository and facet were just used.
    assert (FUNCTION_VERSION, "f:1") in idle and (FUNCTION_VERSION, "g:$LATEST") in idle
    assert (REPOSITORY, "site") not in idle and (FACET, "notes") not in idle
    assert (REPOSITORY, "never-used") in idle
    assert len([k for k, _ in idle if k == EXECUTION]) == 4
    assert _everything(world, tenant=a, idle_days=11) == []


def test_bad_queries_get_precise_errors(world: World, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    with pytest.raises(InvalidParameter, match="kind must be one of"):
        world.inventory.page(kind="tables")
    with pytest.raises(InvalidParameter, match="Invalid marker"):
        world.inventory.page(marker="not-a-marker")
    _, marker = world.inventory.page(tenant=a, limit=1)
    assert marker is not None
    with pytest.raises(InvalidParameter, match="another query"):
        world.inventory.page(tenant=b, marker=marker)
    with pytest.raises(NotFound):
        world.inventory.page(tenant="999999999999")
    assert set(KINDS) == {FUNCTION_VERSION, REPOSITORY, FACET, EXECUTION}
