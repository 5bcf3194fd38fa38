"""`ApproximateRunningDurableExecutions` after a restart: counted from the stores.

The gauge moves with status changes, which a fresh process has not seen for executions
started before it. At start, before the engine takes any work, each tenant's RUNNING
executions are counted per function from the execution store; the status changes after
that move the gauge from there. A tenant whose O(1) usage counters say nothing runs
costs one read, so an idle platform starts as fast as before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import ExecutionQuery, ExecutionStore, FunctionStore
from treadle.observability.metrics import Key
from treadle.tenancy.models import Tenant

_PAGE = 1000


class TenantLister(Protocol):
    def list_tenants(
        self, marker: str | None = None, limit: int = 100
    ) -> tuple[Sequence[Tenant], str | None]: ...


def running_by_function(
    tenants: TenantLister,
    functions: FunctionStore,
    executions: ExecutionStore,
    now_ms: int,
) -> dict[Key, int]:
    """(tenant, function name) -> executions in the RUNNING status now."""
    out: dict[Key, int] = defaultdict(int)
    marker: str | None = None
    while True:
        listed, marker = tenants.list_tenants(marker, _PAGE)
        for tenant in listed:
            if executions.usage(tenant.account_id, now_ms).by_status.get("RUNNING", 0) > 0:
                _count_tenant(tenant.account_id, functions, executions, out)
        if not marker:
            return dict(out)


def _count_tenant(
    tenant: str, functions: FunctionStore, executions: ExecutionStore, out: dict[Key, int]
) -> None:
    query = ExecutionQuery(statuses=frozenset({ExecutionStatus.RUNNING}), limit=_PAGE)
    fn_marker: str | None = None
    while True:
        latest, fn_marker = functions.list_latest(tenant, fn_marker, _PAGE)
        for fn in latest:
            ex_marker: str | None = None
            while True:
                page, ex_marker = executions.list_executions(
                    tenant, fn.function_name, replace(query, marker=ex_marker)
                )
                if page:
                    out[(tenant, fn.function_name)] += len(page)
                if not ex_marker:
                    break
        if not fn_marker:
            return
