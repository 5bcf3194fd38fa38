"""Tenant quotas applied by the use cases: starts per second, running executions,
functions and code bytes. Limits live with the tenant (`/v1/tenants`); counting is the
stores' job, so the check is one read of each. The same read of the tenant gives the
limits a start pins into its execution (`docs/limits.md`)."""

from __future__ import annotations

from typing import Protocol

from treadle.domain.models import ExecutionLimits
from treadle.domain.ports import ExecutionStore, FunctionStore
from treadle.domain.start_queue import StartQueue
from treadle.tenancy.admin import QuotaGuard, TenantAdmin
from treadle.tenancy.errors import RateExceeded


class Quotas(Protocol):
    def check_start(self, tenant: str) -> ExecutionLimits | None:
        """Raise a retryable RateExceeded if the tenant may not start one more execution;
        else the limits the execution runs under (None: the defaults)."""

    def admit_start(self, tenant: str) -> tuple[ExecutionLimits | None, bool]:
        """As `check_start`, but a start over the running limit or the rate may be
        accepted QUEUED: (limits, queued)."""

    def check_code(self, tenant: str, adding_bytes: int, *, new_function: bool) -> None:
        """Raise if storing `adding_bytes` more code (and one more function) is over quota."""


class TenantQuotas:
    def __init__(
        self,
        tenants: TenantAdmin,
        *,
        executions: ExecutionStore,
        functions: FunctionStore,
        guard: QuotaGuard | None = None,
        queue: StartQueue | None = None,
    ) -> None:
        self._tenants = tenants
        self._executions = executions
        self._functions = functions
        self._guard = guard or QuotaGuard()
        self._queue = queue

    @property
    def guard(self) -> QuotaGuard:
        return self._guard

    def admit_start(self, tenant: str) -> tuple[ExecutionLimits, bool]:
        """(limits, queued): whether the start runs now or waits QUEUED for capacity.

        Without a start queue (a backend that has none yet) this is `check_start`. With
        one, a start over the running limit or the rate is queued, and so is any start
        while the tenant has a backlog: FIFO, a new start must not jump the queue. Past
        maxQueued: the retryable 429, as before queueing existed.
        """
        if self._queue is None:
            return self.check_start(tenant), False
        record = self._tenants.get_tenant(tenant)
        queued = self._queue.count_queued(tenant)
        if queued == 0:
            try:
                return self.check_start(tenant), False
            except RateExceeded:
                pass
        self._guard.check_queued(record, queued + 1)
        return record.quotas.execution_limits(), True

    def check_start(self, tenant: str) -> ExecutionLimits:
        record = self._tenants.get_tenant(tenant)
        # Running first: a refused start must not spend a token of the rate bucket.
        self._guard.check_running(record, self._executions.count_running(tenant) + 1)
        self._guard.check_starts(record)
        return record.quotas.execution_limits()

    def check_code(self, tenant: str, adding_bytes: int, *, new_function: bool) -> None:
        record = self._tenants.get_tenant(tenant)
        functions, code_bytes = self._functions.usage(tenant)
        if new_function:
            self._guard.check_functions(record, functions + 1)
        self._guard.check_code_bytes(record, code_bytes + adding_bytes)
