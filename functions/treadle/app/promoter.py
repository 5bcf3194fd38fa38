"""Promotes queued starts (issue 14, point 5) as capacity frees: after an execution
closes or parks and on a periodic safety scan (a promotion missed by a crash is found there).

Fairness: tenants with a backlog are served round-robin, one promotion each per round
and the first tenant rotating between passes, so a tenant with 100,000 queued starts
gets one turn like any other. Per tenant, FIFO: its oldest queued start first.
A promotion is one conditional write (`Engine.promote`): a start promoted by two
promoters at once runs once, and one stopped meanwhile is skipped.
"""

from __future__ import annotations

import logging
import threading

from treadle.domain.engine.engine import Engine
from treadle.domain.errors import NotFound, StorageFull
from treadle.domain.notifications import StatusEvent
from treadle.domain.ports import ExecutionStore
from treadle.domain.start_queue import StartQueue
from treadle.tenancy.admin import QuotaGuard, TenantAdmin
from treadle.tenancy.models import Tenant

log = logging.getLogger(__name__)

# Starts a queued execution may lose to races (stopped or promoted elsewhere) before
# its tenant's turn ends: the next oldest is tried, up to this many.
_SKIPS = 8
# Least time between two passes of the loop. Capacity frees with every execution that
# closes or parks: under load, hundreds of signals a second, each a thread wake-up
# and a read (W2: 4 context switches per execution, mostly to find nothing queued).
# Signals within this time are answered by one pass, which promotes all it can.
SETTLE_S = 0.02


class Promoter:
    def __init__(
        self,
        *,
        tenants: TenantAdmin,
        executions: ExecutionStore,
        queue: StartQueue,
        engine: Engine,
        guard: QuotaGuard,
    ) -> None:
        self._tenants = tenants
        self._executions = executions
        self._queue = queue
        self._engine = engine
        self._guard = guard
        self._lock = threading.Lock()
        self._turn = 0

    def promote(self, limit: int | None = None) -> int:
        """Promote while any tenant with a backlog has capacity, at most `limit` starts
        (a Lambda's run is bounded: the next pass goes on); the number promoted."""
        # One pass at a time in this process: two would only race for the same heads.
        with self._lock:
            backlog = self._queue.tenants_with_queued()
            if not backlog:
                return 0
            self._turn = (self._turn + 1) % len(backlog)
            order = backlog[self._turn :] + backlog[: self._turn]
            active = [r for r in map(self._record, order) if r is not None]
            promoted = 0
            while active:
                still = []
                for tenant in active:
                    if limit is not None and promoted >= limit:
                        return promoted
                    if self._promote_one(tenant):
                        promoted += 1
                        still.append(tenant)
                active = still
            return promoted

    def _record(self, account: str) -> Tenant | None:
        try:
            return self._tenants.get_tenant(account)
        except NotFound:
            return None

    def _promote_one(self, tenant: Tenant) -> bool:
        account = tenant.account_id
        if self._executions.count_running(account) >= tenant.quotas.max_running_executions:
            return False
        heads = self._queue.oldest_queued(account, _SKIPS)
        if not heads or not self._guard.try_start(tenant):
            return False
        # Lazily: the first that promotes ends the turn.
        return any(self._engine.promote(arn) for arn in heads)


class PromotionSignal:
    """Set when capacity may have freed (an execution left RUNNING, or parked on a
    wait, callback or retry and so stopped counting as running: `domain/concurrency`):
    the promoter's loop wakes at once instead of at its next periodic scan."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def status_changed(self, event: StatusEvent) -> None:
        if event.previous_status == "RUNNING" and event.status != "RUNNING":
            self._event.set()

    def slot_freed(self, arn: str) -> None:
        self._event.set()

    def wake(self) -> None:
        self._event.set()

    def take(self) -> bool:
        """Whether capacity may have freed since the last take (and clear it): for a
        process with no loop to wake, which promotes inline instead."""
        freed = self._event.is_set()
        self._event.clear()
        return freed

    def wait(self, timeout_s: float) -> None:
        self._event.wait(timeout_s)
        self._event.clear()


class PromoterLoop:
    """Runs the promoter when signalled, and every `interval_s` anyway: the safety
    scan that finds what a crash, another process or a raised quota left queued."""

    def __init__(self, promoter: Promoter, signal: PromotionSignal, interval_s: float) -> None:
        self._promoter = promoter
        self._signal = signal
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="promoter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._signal.wake()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._signal.wait(self._interval_s)
            if self._stop.is_set():
                return
            try:
                self._promoter.promote()
            except StorageFull as exc:  # one line, not a traceback a second
                log.warning("promoting queued starts failed: %s", exc)
            except Exception:  # the next scan tries again
                log.exception("promoting queued starts failed")
            self._stop.wait(SETTLE_S)
