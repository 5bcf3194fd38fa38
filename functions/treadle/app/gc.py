"""Garbage collection (`POST /v1/tenants/{id}/gc`, and periodically): removes what a
tenant's policy lets go (`domain/gc.py` plans it), each removal through its store's own
delete, so the usage counters move with it, and each audited.

Versions and functions are deleted with `unless_pinned`: the store re-checks in the
delete's own transaction that no execution still running, paused or waiting is pinned to
them, so an execution that started after the plan was read keeps its version (that
removal is then skipped, reported as such). Repositories and facets are removed through
their services' deletes, which take no audit record yet: theirs is appended just after,
as for the API's own deletes of them (`docs/operating.md`).

A run is bounded (`limit` removals); what is left is removed by the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from treadle.app.code_delivery import FUNCTIONS_REPO
from treadle.app.code_gc import collect_code
from treadle.artifacts import ArtifactService, Repositories
from treadle.artifacts.gc import DEFAULT_GRACE_MS, collect_objects
from treadle.artifacts.ports import RefStore
from treadle.domain.audit import (
    AuditLog,
    AuditRecord,
    PrincipalKind,
    current_scope,
    record_id,
)
from treadle.domain.errors import ConcurrentModification, Conflict, NotFound
from treadle.domain.gc import (
    FunctionState,
    GcKind,
    GcPolicy,
    IdleResource,
    Removal,
    plan_functions,
    plan_idle,
)
from treadle.domain.ports import (
    AliasStore,
    Clock,
    CodeStore,
    FunctionStore,
    FunctionVersion,
    Ids,
    LastUsedStore,
)
from treadle.domain.usage import FACET, FUNCTION_VERSION, REPOSITORY
from treadle.facets.ports import FacetStore
from treadle.tenancy.admin import TenantAdmin

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
GC_REMOVALS_PER_SWEEP = 200  # AWS: what one sweep Lambda run removes at most
SYSTEM_KEY = "treadle-gc"  # the access key id of the periodic run's records
_PAGE = 1000


def gc_due(now_ms: int, interval_s: int, run_every_s: int) -> bool:
    """Whether a run at `now_ms`, made every `run_every_s` (the sweep's schedule), is the
    one whose period holds a multiple of `interval_s`: once per interval, no state kept."""
    return (now_ms // 1000) % interval_s < run_every_s


ACTIONS = {
    GcKind.FUNCTION_VERSION: "CollectFunctionVersion",
    GcKind.FUNCTION: "CollectFunction",
    GcKind.REPOSITORY: "CollectRepository",
    GcKind.FACET: "CollectFacet",
    GcKind.GIT_OBJECTS: "CollectGitObjects",
    GcKind.CODE_PACKAGE: "CollectCodePackage",
}


@dataclass(frozen=True)
class Who:
    """Whom the records name: the admin's key for a manual run, the system otherwise."""

    access_key_id: str
    principal: PrincipalKind
    source_address: str

    @staticmethod
    def from_request() -> Who:
        scope = current_scope()
        if scope is None:
            return SYSTEM
        if scope.identify is not None:
            scope.identify(scope)
        return Who(scope.access_key_id, scope.principal, scope.source_address)


SYSTEM = Who(SYSTEM_KEY, PrincipalKind.SYSTEM, "gc")


@dataclass
class GcReport:
    tenant: str
    dry_run: bool
    removed: list[Removal] = field(default_factory=list)  # or, dry run: would remove
    skipped: list[tuple[Removal, str]] = field(default_factory=list)  # and why
    truncated: bool = False  # more was planned than `limit`: the next run goes on


class GarbageCollector:
    def __init__(
        self,
        *,
        tenants: TenantAdmin,
        functions: FunctionStore,
        aliases: AliasStore,
        refs: RefStore,
        artifacts: ArtifactService,
        facets: FacetStore,
        last_used: LastUsedStore,
        clock: Clock,
        ids: Ids,
        audit: AuditLog | None = None,
        repositories: Repositories | None = None,
        pack_grace_ms: int = DEFAULT_GRACE_MS,
        code: CodeStore | None = None,
    ) -> None:
        self._code = code
        self._repositories = repositories
        self._pack_grace_ms = pack_grace_ms
        self._tenants = tenants
        self._functions = functions
        self._aliases = aliases
        self._refs = refs
        self._artifacts = artifacts
        self._facets = facets
        self._last_used = last_used
        self._clock = clock
        self._ids = ids
        self._audit = audit

    # -- planning -------------------------------------------------------------------

    def plan(self, tenant: str, policy: GcPolicy) -> list[Removal]:
        now = self._clock.now_ms()
        out: list[Removal] = []
        if policy.keep_versions is not None or policy.idle_function_days is not None:
            out.extend(plan_functions(policy, self._function_states(tenant), now))
        if policy.idle_repo_days is not None:
            out.extend(
                plan_idle(GcKind.REPOSITORY, policy.idle_repo_days, self._repos(tenant), now)
            )
        if policy.idle_facet_days is not None:
            out.extend(
                plan_idle(GcKind.FACET, policy.idle_facet_days, self._facet_list(tenant), now)
            )
        return out

    def _function_states(self, tenant: str) -> Iterator[FunctionState]:
        used = self._last_used.last_used(tenant, FUNCTION_VERSION)
        marker: str | None = None
        while True:
            latest, marker = self._functions.list_latest(tenant, marker, _PAGE)
            for fn in latest:
                try:
                    yield self._state(tenant, fn, used)
                except NotFound:  # deleted meanwhile
                    continue
            if not marker:
                return

    def _state(self, tenant: str, latest: FunctionVersion, used: dict[str, int]) -> FunctionState:
        name = latest.function_name
        versions: list[FunctionVersion] = []
        marker: str | None = None
        while True:
            found, marker = self._functions.list_versions(tenant, name, marker, _PAGE)
            versions.extend(v for v in found if v.version != "$LATEST")
            if not marker:
                break
        aliased: set[str] = set()
        while True:
            aliases, marker = self._aliases.list_aliases(tenant, name, None, marker, _PAGE)
            aliased.update(a.function_version for a in aliases)
            if not marker:
                break
        prefix = f"{name}:"
        return FunctionState(
            latest=latest,
            versions=versions,
            aliased=frozenset(aliased),
            pins=self._functions.live_pins(tenant, name),
            last_used={k[len(prefix) :]: ms for k, ms in used.items() if k.startswith(prefix)},
        )

    def _repos(self, tenant: str) -> list[IdleResource]:
        used = self._last_used.last_used(tenant, REPOSITORY)
        now = self._clock.now_ms()
        out: list[IdleResource] = []
        after: str | None = None
        while True:
            page = self._refs.list_repos(tenant, limit=_PAGE, after=after)
            for name in page.names:
                if name == FUNCTIONS_REPO:
                    continue  # the mirror of the tenant's function code (code_delivery)
                if name not in used:
                    # No creation time is kept: never used, it is idle from first seen
                    # (as the inventory counts it).
                    self._last_used.touch(tenant, REPOSITORY, name, now)
                    used[name] = now
                out.append(IdleResource(name, None, used[name]))
            if page.next_marker is None:
                return out
            after = page.next_marker

    def _facet_list(self, tenant: str) -> list[IdleResource]:
        used = self._last_used.last_used(tenant, FACET)
        return [
            IdleResource(f.name, f.size_bytes, max(f.last_used_ms, used.get(f.name, 0)))
            for f in self._facets.list(tenant)
        ]

    # -- running ----------------------------------------------------------------------

    def run(
        self, tenant: str, *, dry_run: bool, who: Who = SYSTEM, limit: int = DEFAULT_LIMIT
    ) -> GcReport:
        """Plan the tenant's removals and, unless `dry_run`, make at most `limit`."""
        policy = self._tenants.get_tenant(tenant).quotas.gc
        report = GcReport(tenant, dry_run)
        planned = [] if policy.empty else self.plan(tenant, policy)
        report.truncated = len(planned) > limit
        planned = planned[:limit]
        if dry_run:
            report.removed = planned
        else:
            for removal in planned:
                why = self._remove(tenant, removal, who)
                if why is None:
                    report.removed.append(removal)
                else:
                    report.skipped.append((removal, why))
        if not policy.empty and len(report.removed) < limit:
            self._git_objects(report, who, limit)
        if report.removed and not dry_run:
            log.info("gc of %s removed %d resources", tenant, len(report.removed))
        return report

    def run_all(self, *, limit: int = DEFAULT_LIMIT) -> int:
        """The periodic run over every tenant with a policy; how many removals were made."""
        removed = 0
        marker: str | None = None
        while removed < limit:
            tenants, marker = self._tenants.list_tenants(marker, 100)
            for t in tenants:
                if t.quotas.gc.empty or removed >= limit:
                    continue
                try:
                    removed += len(
                        self.run(t.account_id, dry_run=False, limit=limit - removed).removed
                    )
                except Exception:  # one tenant's failure must not stop the others'
                    log.exception("gc of tenant %s failed", t.account_id)
            if not marker:
                break
        if removed < limit:
            removed += len(self.collect_code(dry_run=False, limit=limit - removed).removed)
        return removed

    def collect_code(
        self, *, dry_run: bool, who: Who = SYSTEM, limit: int = DEFAULT_LIMIT
    ) -> GcReport:
        """The platform's code packages that no version references (`app/code_gc.py`)."""
        report = GcReport("", dry_run)
        if self._code is None:
            return report
        report.truncated = collect_code(
            self._functions,
            self._code,
            now_ms=self._clock.now_ms(),
            grace_ms=self._pack_grace_ms,
            dry_run=dry_run,
            limit=limit,
            removed=report.removed,
            skipped=report.skipped,
            audit=lambda r: self._append("", r, who, f"code/{r.resource}"),
        )
        if report.removed and not dry_run:
            log.info("gc removed %d code packages", len(report.removed))
        return report

    def _git_objects(self, report: GcReport, who: Who, limit: int) -> None:
        """Unreachable Git objects of the tenant's remaining repositories (any policy
        turns this on): one repack per repository, each counted as one removal."""
        if self._repositories is None:
            return
        tenant, now = report.tenant, self._clock.now_ms()
        gone = {r.resource for r in report.removed if r.kind is GcKind.REPOSITORY}
        after: str | None = None
        while True:
            page = self._refs.list_repos(tenant, limit=_PAGE, after=after)
            for name in page.names:
                if name in gone:
                    continue
                if len(report.removed) >= limit:
                    report.truncated = True
                    return
                try:
                    found = collect_objects(
                        self._repositories,
                        tenant,
                        name,
                        now,
                        grace_ms=self._pack_grace_ms,
                        dry_run=report.dry_run,
                        min_packs=2,
                    )
                except NotFound:  # deleted meanwhile
                    continue
                if found is None:
                    continue
                removal = Removal(
                    GcKind.GIT_OBJECTS,
                    name,
                    None if report.dry_run else found.bytes_freed,
                    f"{found.unreachable} Git objects no ref reaches",
                )
                report.removed.append(removal)
                if not report.dry_run:
                    self._append(tenant, removal, who, f"/v1/repos/{name}")
            if page.next_marker is None:
                return
            after = page.next_marker

    def _remove(self, tenant: str, removal: Removal, who: Who) -> str | None:
        """Remove one resource; None if it went, else why it stayed."""
        try:
            if removal.kind is GcKind.FUNCTION_VERSION:
                name, _, version = removal.resource.rpartition(":")
                arn = self._functions.get(tenant, name, version).qualified_arn
                record = self._record(tenant, removal, who, arn)
                self._functions.delete(tenant, name, version, audit=record, unless_pinned=True)
            elif removal.kind is GcKind.FUNCTION:
                arn = self._functions.get(tenant, removal.resource).function_arn
                record = self._record(tenant, removal, who, arn)
                self._functions.delete(tenant, removal.resource, audit=record, unless_pinned=True)
            elif removal.kind is GcKind.REPOSITORY:
                self._artifacts.delete_repo(tenant, removal.resource)
                self._forget(tenant, REPOSITORY, removal.resource)
                self._append(tenant, removal, who, f"/v1/repos/{removal.resource}")
            elif removal.kind is GcKind.FACET:
                if self._facets.delete(tenant, removal.resource):
                    self._forget(tenant, FACET, removal.resource)
                    self._append(tenant, removal, who, f"/v1/facets/{removal.resource}")
                else:
                    return "already gone"
        except (Conflict, NotFound, ConcurrentModification) as exc:
            # Pinned or aliased since the plan was read, removed or still changing: kept
            # (the next run sees it again).
            return str(exc)
        return None

    def _forget(self, tenant: str, kind: str, name: str) -> None:
        self._last_used.forget(tenant, kind, name)

    def _record(self, tenant: str, removal: Removal, who: Who, resource: str) -> AuditRecord:
        now = self._clock.now_ms()
        return AuditRecord(
            id=record_id(now, self._ids.request_id().replace("-", "")[:16]),
            time_ms=now,
            access_key_id=who.access_key_id,
            principal=who.principal,
            tenant=tenant,
            action=ACTIONS[removal.kind],
            resource=resource,
            source_address=who.source_address,
        )

    def _append(self, tenant: str, removal: Removal, who: Who, resource: str) -> None:
        if self._audit is not None:
            self._audit.append(self._record(tenant, removal, who, resource))
