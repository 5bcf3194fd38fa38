"""Code packages reclaimed by the collector (`app/code_gc.py`) over real embedded stores
and the real function use cases: a package goes only once no version of any tenant has
named it for the grace period; a dry run lists it and removes nothing; each removal is
audited; and a create that reuses the bytes of a package removed under its feet gets
its package back."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.fakes import ManualClock, NoQuotas
from support.server import zip_files
from treadle.adapters.local.basics import RandomIds
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.sqlite.audit import SqliteAuditLog
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.facets import SqliteFacetStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.last_used import SqliteLastUsed
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.app.functions import (
    CreateFunctionRequest,
    FunctionCode,
    FunctionService,
    UpdateCodeRequest,
)
from treadle.app.gc import GarbageCollector
from treadle.artifacts import ArtifactService, Repositories
from treadle.domain.audit import AuditQuery
from treadle.domain.errors import NotFound
from treadle.domain.gc import GcKind, GcPolicy
from treadle.tenancy.admin import TenantAdmin

GRACE_MS = 3_600_000
A, B = "111111111111", "222222222222"


def _zip(source: str) -> bytes:
    return zip_files({"handler.py": source})  # the same source, the same bytes


@dataclass
class World:
    clock: ManualClock
    code: LocalCodeStore
    functions: SqliteFunctionStore
    service: FunctionService
    gc: GarbageCollector
    audit: SqliteAuditLog
    tenants: TenantAdmin


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    clock = ManualClock()
    db = Database(tmp_path / "treadle.db")
    functions = SqliteFunctionStore(db)
    code = LocalCodeStore(tmp_path / "code")
    refs = SqliteRefStore(tmp_path / "refs.db")
    artifacts = ArtifactService(Repositories(LocalObjectStore(tmp_path / "objects"), refs))
    tenants = TenantAdmin(SqliteTenantStore(tmp_path / "tenants.db"), clock)
    audit = SqliteAuditLog([db.file, refs.file], now_ms=clock.now_ms)
    service = FunctionService(
        store=functions, code=code, artifacts=artifacts, clock=clock, ids=RandomIds(),
        region="us-east-1", quotas=NoQuotas(),
    )  # fmt: skip
    gc = GarbageCollector(
        tenants=tenants, functions=functions, aliases=functions, refs=refs,
        artifacts=artifacts, facets=SqliteFacetStore(tmp_path / "facets"),
        last_used=SqliteLastUsed(db), clock=clock, ids=RandomIds(), audit=audit,
        pack_grace_ms=GRACE_MS, code=code,
    )  # fmt: skip
    yield World(clock, code, functions, service, gc, audit, tenants)
    db.close()


def _create(w: World, tenant: str, name: str, zip_bytes: bytes) -> str:
    req = CreateFunctionRequest(
        FunctionName=name,
        Handler="handler.handler",
        Code=FunctionCode(ZipFile=base64.b64encode(zip_bytes).decode()),
    )
    return w.service.create(tenant, req).code_key


def _update(w: World, tenant: str, name: str, zip_bytes: bytes, publish: bool = False) -> str:
    req = UpdateCodeRequest(ZipFile=base64.b64encode(zip_bytes).decode(), Publish=publish)
    return w.service.update_code(tenant, name, req).code_key


def _present(w: World, key: str) -> bool:
    try:
        w.code.get(key)
    except NotFound:
        return False
    return True


def _kinds(report: Any) -> list[tuple[GcKind, str]]:
    return [(r.kind, r.resource) for r in report.removed]


def test_a_package_goes_after_the_grace_once_no_version_of_any_tenant_names_it(
    w: World,
) -> None:
    old = _create(w, A, "f", _zip("v1"))
    _create(w, B, "g", _zip("v1"))  # the same bytes: one package, two tenants
    _update(w, A, "f", _zip("v2"))
    assert w.gc.collect_code(dry_run=False).removed == []  # B's `g` still names it
    w.functions.delete(B, "g")
    assert w.gc.collect_code(dry_run=False).removed == []  # stamped free: the grace starts
    w.clock.advance(GRACE_MS - 1)
    assert w.gc.collect_code(dry_run=True).removed == []
    w.clock.advance(1)
    plan = w.gc.collect_code(dry_run=True)
    assert _kinds(plan) == [(GcKind.CODE_PACKAGE, old)]
    assert plan.removed[0].size_bytes == len(_zip("v1"))
    assert _present(w, old)  # a dry run removes nothing
    done = w.gc.collect_code(dry_run=False)
    assert _kinds(done) == [(GcKind.CODE_PACKAGE, old)]
    assert not _present(w, old)
    assert w.gc.collect_code(dry_run=False).removed == []
    records = w.audit.query(AuditQuery(action="CollectCodePackage")).records
    assert [(r.tenant, r.resource) for r in records] == [("", f"code/{old}")]


def test_a_package_named_again_within_the_grace_is_kept(w: World) -> None:
    first = _create(w, A, "f", _zip("v1"))
    _update(w, A, "f", _zip("v2"))
    w.gc.collect_code(dry_run=False)  # stamped
    w.clock.advance(GRACE_MS // 2)
    assert _update(w, A, "f", _zip("v1"), publish=True) == first  # named again
    _update(w, A, "f", _zip("v3"))  # version 1 still names it
    w.clock.advance(GRACE_MS)
    assert w.gc.collect_code(dry_run=False).removed == []
    assert _present(w, first)


def test_a_create_reusing_a_package_removed_under_its_feet_gets_it_back(w: World) -> None:
    key = _create(w, A, "f", _zip("same"))
    w.functions.delete(A, "f")
    w.gc.collect_code(dry_run=False)
    w.clock.advance(GRACE_MS)
    # The collector runs between the create's upload (which finds the package there)
    # and its record write: the package goes, then the version names it.
    put_latest = w.functions.put_latest

    def collected_first(*args: Any, **kwargs: Any) -> None:
        assert _kinds(w.gc.collect_code(dry_run=False)) == [(GcKind.CODE_PACKAGE, key)]
        put_latest(*args, **kwargs)

    w.functions.put_latest = collected_first  # type: ignore[method-assign]
    assert _create(w, B, "g", _zip("same")) == key
    assert _present(w, key)  # put back once the version was written
    assert w.code.unpacked(key, B).joinpath("handler.py").read_text() == "same"


def test_the_periodic_run_reclaims_packages_after_the_tenants_own(w: World) -> None:
    tenant = w.tenants.create_tenant("a")[0].account_id
    w.tenants.update_quotas(tenant, {"gc": GcPolicy(keep_versions=0)})
    first = _create(w, tenant, "f", _zip("v1"))
    second = _update(w, tenant, "f", _zip("v2"), publish=True)  # version 1
    latest = _update(w, tenant, "f", _zip("v3"))  # only version 1 names `second` now
    assert w.gc.run_all() == 1  # version 1 goes; both packages are stamped free
    w.clock.advance(GRACE_MS)
    assert w.gc.run_all() == 2
    assert not _present(w, first) and not _present(w, second) and _present(w, latest)
