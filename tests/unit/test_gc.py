"""Garbage collection over real embedded stores (`app/gc.py`, `domain/gc.py`): what a
policy plans, what a run removes and what it never removes (aliased or pinned versions,
functions with live executions, the code mirror), the audit record of each removal and
the usage counters moving with it. The clock is moved by hand to make things idle."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.fakes import ManualClock
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
from treadle.app.gc import GarbageCollector, gc_due
from treadle.artifacts import ArtifactService, Repositories
from treadle.domain.audit import AuditQuery, PrincipalKind
from treadle.domain.gc import DAY_MS, GcKind, GcPolicy
from treadle.domain.models import Execution, ExecutionStatus
from treadle.domain.ports import Alias, Commit, FunctionVersion
from treadle.domain.usage import FACET, FUNCTION_VERSION, REPOSITORY
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
    audit: SqliteAuditLog
    gc: GarbageCollector
    tenant: str


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    # From the real time: a facet's idleness counts from its file's last write too.
    clock = ManualClock(int(time.time() * 1000))
    db = Database(tmp_path / "treadle.db")
    tenants = TenantAdmin(SqliteTenantStore(tmp_path / "tenants.db"), clock)
    functions, executions = SqliteFunctionStore(db), SqliteExecutionStore(db)
    refs = SqliteRefStore(tmp_path / "refs.db")
    facets = SqliteFacetStore(tmp_path / "facets")
    last_used = SqliteLastUsed(db)
    audit = SqliteAuditLog([db.file, refs.file], now_ms=clock.now_ms)
    gc = GarbageCollector(
        tenants=tenants,
        functions=functions,
        aliases=functions,
        refs=refs,
        artifacts=ArtifactService(Repositories(LocalObjectStore(tmp_path / "objects"), refs)),
        facets=facets,
        last_used=last_used,
        clock=clock,
        ids=RandomIds(),
        audit=audit,
    )
    tenant = tenants.create_tenant("a")[0].account_id
    yield World(clock, tenants, functions, executions, refs, facets, last_used, audit, gc, tenant)
    db.close()


def _policy(w: World, **fields: int) -> None:
    w.tenants.update_quotas(w.tenant, {"gc": GcPolicy(**fields)})


def _function(w: World, name: str, versions: int, size: int = 100) -> None:
    """`name` with `versions` published versions, each of its own code."""
    for i in range(versions + 1):
        fn = FunctionVersion(
            tenant=w.tenant,
            function_name=name,
            version="$LATEST",
            function_arn=f"arn:aws:lambda:us-east-1:{w.tenant}:function:{name}",
            handler="app.handler",
            code_sha256=f"c{i}",
            code_size=size,
            code_key=f"{i:064x}",
            last_modified_ms=w.clock.now_ms(),
            revision_id=uuid.uuid4().hex,
        )
        w.functions.put_latest(fn, create=i == 0)
        if i < versions:
            w.functions.publish(w.tenant, name, None)


def _start(w: World, name: str, version: str, function: str = "f") -> Execution:
    ex = Execution(
        arn=f"arn:aws:lambda:us-east-1:{w.tenant}:function:{function}:{version}"
        f"/durable-execution/{name}/{name}",
        tenant=w.tenant,
        function_name=function,
        version=version,
        name=name,
        exec_id=name,
        status=ExecutionStatus.RUNNING,
        input_payload=None,
        input_hash="h",
        start_ms=w.clock.now_ms(),
        execution_timeout_s=60,
        retention_days=1,
    )
    w.executions.create(Commit(execution=ex))
    return ex


def _close(w: World, arn: str) -> None:
    ex = w.executions.load(arn).execution
    ex.status = ExecutionStatus.SUCCEEDED
    w.executions.commit(Commit(execution=ex))


def _versions(w: World, name: str = "f") -> list[str]:
    found, _ = w.functions.list_versions(w.tenant, name, None, 100)
    return [v.version for v in found]


def _alias(w: World, version: str) -> None:
    w.functions.create_alias(
        Alias(
            tenant=w.tenant,
            function_name="f",
            name="live",
            function_arn=f"arn:aws:lambda:us-east-1:{w.tenant}:function:f",
            function_version=version,
            revision_id="r",
        )
    )


def _resources(removals: list[object]) -> list[str]:
    return [r.resource for r in removals]  # type: ignore[attr-defined]


def test_no_policy_collects_nothing(world: World) -> None:
    _function(world, "f", 5)
    report = world.gc.run(world.tenant, dry_run=False)
    assert report.removed == [] and _versions(world) == ["$LATEST", "1", "2", "3", "4", "5"]


def test_a_dry_run_lists_the_versions_beyond_the_newest_kept_and_removes_nothing(
    world: World,
) -> None:
    _function(world, "f", 5)
    _policy(world, keep_versions=2)
    report = world.gc.run(world.tenant, dry_run=True)
    assert _resources(report.removed) == ["f:3", "f:2", "f:1"]
    assert {r.kind for r in report.removed} == {GcKind.FUNCTION_VERSION}
    assert all(r.size_bytes == 100 and "newest 2" in r.reason for r in report.removed)
    assert _versions(world) == ["$LATEST", "1", "2", "3", "4", "5"]
    assert world.audit.query(AuditQuery(tenant=world.tenant)).records == []


def test_a_run_never_removes_latest_an_aliased_or_a_pinned_version(world: World) -> None:
    _function(world, "f", 5)
    _alias(world, "2")
    waiting = _start(world, "waiting", "1")
    _policy(world, keep_versions=1)
    report = world.gc.run(world.tenant, dry_run=False)
    assert sorted(_resources(report.removed)) == ["f:3", "f:4"]
    assert _versions(world) == ["$LATEST", "1", "2", "5"]
    assert world.functions.counts(world.tenant).versions == 3  # the counters moved
    _close(world, waiting.arn)
    again = world.gc.run(world.tenant, dry_run=False)
    assert _resources(again.removed) == ["f:1"]  # released once its execution closed


def test_a_version_pinned_after_the_plan_was_read_is_kept_and_reported(world: World) -> None:
    _function(world, "f", 3)
    _policy(world, keep_versions=1)
    planned = world.gc.plan(world.tenant, GcPolicy(keep_versions=1))
    assert _resources(planned) == ["f:2", "f:1"]
    _start(world, "late", "1")  # between the plan and the delete
    report = world.gc.run(world.tenant, dry_run=False)
    # The run plans afresh and the delete re-checks: version 1 stays either way.
    assert "f:1" not in _resources(report.removed)
    assert _versions(world) == ["$LATEST", "1", "3"]


def test_each_removal_is_audited_with_its_principal(world: World) -> None:
    _function(world, "f", 3)
    _policy(world, keep_versions=1)
    world.gc.run(world.tenant, dry_run=False)
    records = world.audit.query(AuditQuery(tenant=world.tenant)).records
    assert sorted(r.resource.rsplit(":", 1)[1] for r in records) == ["1", "2"]
    for r in records:
        assert r.action == "CollectFunctionVersion" and r.outcome == "succeeded"
        assert r.principal is PrincipalKind.SYSTEM and r.access_key_id == "treadle-gc"
        assert r.resource.startswith(f"arn:aws:lambda:us-east-1:{world.tenant}:function:f:")


def test_an_idle_function_goes_whole_unless_an_execution_is_live(world: World) -> None:
    _function(world, "f", 2)
    _function(world, "g", 1)
    live = _start(world, "live", "$LATEST", function="g")
    _policy(world, idle_function_days=30)
    assert world.gc.run(world.tenant, dry_run=False).removed == []  # not idle yet
    world.clock.advance(31 * DAY_MS)
    report = world.gc.run(world.tenant, dry_run=False)
    assert [(r.kind, r.resource, r.size_bytes) for r in report.removed] == [
        (GcKind.FUNCTION, "f", 300)
    ]
    assert world.functions.counts(world.tenant).functions == 1  # g, held by its execution
    _close(world, live.arn)
    assert _resources(world.gc.run(world.tenant, dry_run=False).removed) == ["g"]
    counts = world.functions.counts(world.tenant)
    assert (counts.functions, counts.versions, counts.code_bytes) == (0, 0, 0)


def test_a_recent_use_of_any_version_keeps_a_function(world: World) -> None:
    _function(world, "f", 2)
    _policy(world, idle_function_days=30)
    world.clock.advance(29 * DAY_MS)
    world.last_used.touch(world.tenant, FUNCTION_VERSION, "f:1", world.clock.now_ms())
    world.clock.advance(2 * DAY_MS)
    assert world.gc.run(world.tenant, dry_run=False).removed == []


def test_idle_repositories_and_facets_go_but_not_the_code_mirror(world: World) -> None:
    for repo in ("old", "busy", "functions"):
        world.refs.create_repo(world.tenant, repo)
    world.facets.create(world.tenant, "stale")
    _policy(world, idle_repo_days=7, idle_facet_days=7)
    assert world.gc.run(world.tenant, dry_run=False).removed == []  # first seen now
    world.clock.advance(6 * DAY_MS)
    world.last_used.touch(world.tenant, REPOSITORY, "busy", world.clock.now_ms())
    world.clock.advance(60 * DAY_MS)
    world.last_used.touch(world.tenant, REPOSITORY, "busy", world.clock.now_ms())
    report = world.gc.run(world.tenant, dry_run=False)
    assert sorted((r.kind.value, r.resource) for r in report.removed) == [
        ("facet", "stale"),
        ("repository", "old"),
    ]
    assert world.refs.list_repos(world.tenant).names == ["busy", "functions"]
    assert world.facets.list(world.tenant) == []
    assert "stale" not in world.last_used.last_used(world.tenant, FACET)
    actions = {r.action for r in world.audit.query(AuditQuery(tenant=world.tenant)).records}
    assert {"CollectRepository", "CollectFacet"} <= actions


def test_a_run_is_bounded_and_says_so(world: World) -> None:
    _function(world, "f", 6)
    _policy(world, keep_versions=0)
    first = world.gc.run(world.tenant, dry_run=False, limit=4)
    assert len(first.removed) == 4 and first.truncated
    second = world.gc.run(world.tenant, dry_run=False, limit=4)
    assert len(second.removed) == 2 and not second.truncated
    assert _versions(world) == ["$LATEST"]


def test_the_periodic_run_covers_only_tenants_with_a_policy(world: World) -> None:
    _function(world, "f", 3)
    other = world.tenants.create_tenant("b")[0].account_id
    mine = world.tenant
    world.tenant = other
    _function(world, "f", 3)
    world.tenant = mine
    _policy(world, keep_versions=1)
    assert world.gc.run_all() == 2
    assert _versions(world) == ["$LATEST", "3"]
    world.tenant = other
    assert _versions(world) == ["$LATEST", "1", "2", "3"]


def test_the_sweep_runs_gc_once_per_interval() -> None:
    minute_runs = [m * 60_000 for m in range(0, 180)]
    due = [t for t in minute_runs if gc_due(t, 3600, 60)]
    assert due == [0, 3_600_000, 7_200_000]


def test_a_policy_is_validated_precisely() -> None:
    with pytest.raises(ValueError, match="keep_versions"):
        GcPolicy(keep_versions=-1)
    with pytest.raises(ValueError, match="idle_repo_days"):
        GcPolicy(idle_repo_days=0)
    assert GcPolicy().empty and not GcPolicy(idle_facet_days=1).empty
