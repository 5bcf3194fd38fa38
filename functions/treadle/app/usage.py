"""A tenant's usage (`GET /v1/tenants/{id}/usage`): what its counters say now.

Executions are counters the execution store moves in each commit's own transaction, so
they cost a fixed number of reads at any volume (`domain.usage`). Functions and code
bytes are the function store's counters (kept in the function writes' own
transactions on both backends: triggers on SQLite, `function_counts` on DynamoDB), facets
the facet store's listing (bounded by the tenant's `maxFacets`; sizes are what the
filesystem says at the time, as tenant code writes facets directly) and repositories
the ref store's listing (bounded by how many the tenant made).
"""

from __future__ import annotations

from dataclasses import dataclass

from treadle.artifacts.ports import RefStore
from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import Clock, ExecutionStore, FunctionStore
from treadle.facets.ports import FacetStore
from treadle.tenancy.admin import TenantAdmin


@dataclass(frozen=True)
class TenantUsage:
    tenant: str
    at_ms: int
    functions: int
    versions: int
    code_bytes: int
    repositories: int
    facets: int
    facet_bytes: int
    by_status: dict[str, int]
    running: int
    waiting: int
    queued: int
    starts_last_minute: int
    repository_bytes: int = 0  # coarse: moved after packs are stored or removed


class UsageService:
    def __init__(
        self,
        *,
        tenants: TenantAdmin,
        executions: ExecutionStore,
        functions: FunctionStore,
        refs: RefStore,
        facets: FacetStore,
        clock: Clock,
    ) -> None:
        self._tenants = tenants
        self._executions = executions
        self._functions = functions
        self._refs = refs
        self._facets = facets
        self._clock = clock

    def usage(self, tenant: str) -> TenantUsage:
        self._tenants.get_tenant(tenant)  # NotFound for a tenant that does not exist
        now = self._clock.now_ms()
        counts = self._executions.usage(tenant, now)
        functions = self._functions.counts(tenant)
        facets = self._facets.list(tenant)
        return TenantUsage(
            tenant=tenant,
            at_ms=now,
            functions=functions.functions,
            versions=functions.versions,
            code_bytes=functions.code_bytes,
            repositories=self._refs.count_repos(tenant),
            facets=len(facets),
            facet_bytes=sum(f.size_bytes for f in facets),
            by_status={s.value: counts.status(s.value) for s in ExecutionStatus},
            running=counts.running,
            waiting=counts.waiting,
            # QUEUED is a status: its counter moves in the start's and promotion's
            # transactions (0 on a backend that refuses instead of queueing).
            queued=counts.status("QUEUED"),
            starts_last_minute=counts.starts_last_minute(now),
            repository_bytes=self._refs.repo_bytes(tenant),
        )
