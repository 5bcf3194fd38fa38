"""Tenant quotas applied by the use cases: starts per second, running executions,
functions and code bytes. Limits live with the tenant (`/v1/tenants`); counting is the
stores' job, so the check is one read of each. The same read of the tenant gives the
limits a start pins into its execution (`docs/limits.md`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from treadle.domain.errors import TreadleError
from treadle.domain.models import ExecutionLimits
from treadle.domain.ports import ExecutionStore, FunctionStore
from treadle.domain.start_queue import StartQueue
from treadle.tenancy.admin import QuotaGuard, TenantAdmin
from treadle.tenancy.errors import RateExceeded

# What a start is admitted as: the limits it is pinned to, and whether it waits QUEUED.
Admission = tuple[ExecutionLimits, bool]


class Quotas(Protocol):
    def check_start(self, tenant: str) -> ExecutionLimits | None:
        """Raise a retryable RateExceeded if the tenant may not start one more execution;
        else the limits the execution runs under (None: the defaults)."""

    def admit_start(self, tenant: str) -> tuple[ExecutionLimits | None, bool]:
        """As `check_start`, but a start over the running limit or the rate may be
        accepted QUEUED: (limits, queued)."""

    def admit_starts(
        self, tenant: str, count: int
    ) -> Sequence[tuple[ExecutionLimits | None, bool] | TreadleError]:
        """`admit_start` for each of `count` starts of one request (a batch): each its
        own outcome, in order."""

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

    def admit_start(self, tenant: str) -> Admission:
        """(limits, queued): whether the start runs now or waits QUEUED for capacity.

        Without a start queue (a backend that has none yet) this is `check_start`. With
        one, a start over the running limit or the rate is queued, and so is any start
        while the tenant has a backlog: FIFO, a new start must not jump the queue. Past
        maxQueued: the retryable 429, as before queueing existed.
        """
        outcome = self.admit_starts(tenant, 1)[0]
        if isinstance(outcome, TreadleError):
            raise outcome
        return outcome

    def admit_starts(self, tenant: str, count: int) -> list[Admission | TreadleError]:
        """`admit_start` for each of `count` starts of one request, in order, each its
        own outcome. The counters are read once and counted on locally: the starts are
        written together after this (`Engine.start_batch`), so a read per start would
        see none of them and admit a batch past the limits."""
        record = self._tenants.get_tenant(tenant)
        limits = record.quotas.execution_limits()
        running = self._executions.count_running(tenant)
        queued = None if self._queue is None else self._queue.count_queued(tenant)
        out: list[Admission | TreadleError] = []
        for _ in range(count):
            try:
                if not queued:  # None (no queue) or an empty one: run now if allowed
                    try:
                        # Running first: a refused start must not spend a rate token.
                        self._guard.check_running(record, running + 1)
                        self._guard.check_starts(record)
                        running += 1
                        out.append((limits, False))
                        continue
                    except RateExceeded:
                        if queued is None:
                            raise
                self._guard.check_queued(record, (queued or 0) + 1)
                queued = (queued or 0) + 1
                out.append((limits, True))
            except TreadleError as exc:
                out.append(exc)
        return out

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
