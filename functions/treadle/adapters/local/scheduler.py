"""The embedded Dispatcher: an in-process loop over the persisted timer rows.

Timers live in the store (written in the same transaction as the change that sets
them), so a restart loses nothing: this loop only reads due rows and hands them to a
worker pool. A timer in flight is not handed out twice; a failing one backs off.
Dispatching (`dispatch`) therefore only has to cut the loop's sleep short: it takes
every timer whatever its due time, and leaves nothing for a sweep.

Two lanes. Invocations (INVOKE timers) hold a sandbox worker for as long as tenant
code runs, so their lane is bounded by how many workers may run at once: a burst of
5,000 wake-ups then queues here instead of forking a worker per extra invocation
(which costs a fork, memory, and CPU the running ones need). Every other timer (wait
and retry expiries, callback timeouts, chained starts) is one short commit; it has a
lane of its own so that it never queues behind slow tenant code.

The loop reads at most what the lanes can take (plus what is already in flight, which
the read skips), so a backlog of thousands of due rows costs each pass a bounded read.
It reads only for a lane that is hungry, with no more handed to it than it has threads
(`_hungry`): a lane holds twice that, so its threads stay busy until the refill, and one
read refills half a lane. Reading whenever one slot frees cost a read of every in-flight
row per invocation under a backlog (W2b: a tenth of the server's time under the GIL).

A start may also reserve a slot of the invocation lane (`reserve`, the
`InvocationLanes` port) and hand its first invocation over directly: counted like a
timer in flight, so the lane's bound holds for both. When the lane is full the slot is
a queued one: the invocation (its lease already committed) waits in the backlog, in
memory, and a lane thread that frees takes the oldest, keeping no more than its threads
busy with them so that due rows read by the loop get the rest of the lane. The backlog
is bounded (`backlog_max`); past it, the INVOKE timer's row waits instead, as before.
Its leases' timers are not due (they allow for the wait: `queued_lease_allowance_s`),
so the loop's read does not count them among the rows it will pass over.

Several processes on one data directory (`domain/partition`): each loop reads only
the timers of the executions its process owns, and a change committed here that sets
another process's timer due soon rings that process's doorbell (`ring`), since its loop
would otherwise find it only at its next look (up to a second later).

An invocation whose outcome could not be committed (the disk full, the store
unavailable: `Unavailable`) still holds its lease in the store, and the lease's timer is
due only at the function's timeout plus a margin: up to a quarter of an hour. Nothing
runs under that lease any more (the invocation is over), so the loop ends it early, in
memory: the INVOKE timer is fired again after a backoff (`_ending`), and the engine
takes it as a lapsed lease, as it would at the lease's end. The platform then carries
on seconds after space comes back instead of at the lease's end; if the process dies
first, the lease's row is still there.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from treadle.domain.errors import StorageFull, Unavailable
from treadle.domain.partition import Partition, owner
from treadle.domain.ports import Clock, ExecutionStore, Timer, TimerKind
from treadle.failpoints import Kind, boundary

log = logging.getLogger(__name__)

_IDLE_POLL_S = 1.0
_FAILURE_BACKOFF_MS = 1000
# Ending the lease of an invocation whose outcome was refused: first after this, then
# doubling up to the cap while the store still refuses.
_LEASE_END_FIRST_MS = 500
_LEASE_END_CAP_MS = 8000
_INVOKE, _OTHER = "invoke", "other"
# Work handed to a lane beyond its threads: keeps them busy between two passes.
_QUEUE_FACTOR = 2
# Invocations queued in memory behind a full lane, at most (`reserve`): each holds its
# envelope (~1-3 KiB), and a restart gives back each one's lease in a commit.
BACKLOG_MAX = 10_000


def _lane(timer: Timer) -> str:
    return _INVOKE if timer.kind is TimerKind.INVOKE else _OTHER


class TimerScheduler:
    def __init__(
        self,
        store: ExecutionStore,
        clock: Clock,
        handler: Callable[[Timer], None],
        *,
        workers: int = 16,
        invoke_workers: int = 16,
        partition: Partition | None = None,
        ring: Callable[[int, int], None] | None = None,
        backlog_max: int = BACKLOG_MAX,
    ) -> None:
        """`partition`: this process's share of the timers (the store reads only those);
        `ring(index, due_ms)`: wake process `index` for a timer of its own."""
        self._partition = partition or Partition()
        self._ring = ring
        self._store = store
        self._clock = clock
        self._handler = handler
        self._pools = {
            _INVOKE: ThreadPoolExecutor(max_workers=invoke_workers, thread_name_prefix="invoke"),
            _OTHER: ThreadPoolExecutor(max_workers=workers, thread_name_prefix="timer"),
        }
        self._threads = {_INVOKE: invoke_workers, _OTHER: workers}
        self._capacity = {lane: n * _QUEUE_FACTOR for lane, n in self._threads.items()}
        self._queued = {_INVOKE: 0, _OTHER: 0}
        # Queued slots (`reserve`): reserved, and the work of those already run, oldest
        # first; their keys are in `_in_flight` from the reservation on.
        self._backlog_max = backlog_max
        self._backlogged = 0
        self._backlog: deque[tuple[Callable[[], None], tuple[str, str, str]]] = deque()
        self._cond = threading.Condition()
        self._woken = False
        # None while a pass runs; else the instant the loop will look again by itself.
        self._sleeping_until: int | None = None
        # A pass left due timers behind (lane full, or already in flight).
        self._left_behind = False
        self._in_flight: set[tuple[str, str, str]] = set()
        self._backoff: dict[tuple[str, str, str], int] = {}
        # Leases to end early: key -> (when, the delay after which it was set).
        self._ending: dict[tuple[str, str, str], tuple[int, int]] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    def dispatch(self, timers: Sequence[Timer], now_ms: int) -> list[Timer]:
        """The loop reads the rows itself: wake it for the earliest; nothing is left.
        Another process's timer due before its loop looks again rings its doorbell."""
        if not timers:
            return []
        part = self._partition
        if part.whole:
            self.wake(min(timer.due_ms for timer in timers))
            return []
        earliest: dict[int, int] = {}
        for timer in timers:
            index = owner(timer.arn, part.count)
            earliest[index] = min(earliest.get(index, timer.due_ms), timer.due_ms)
        for index, due in earliest.items():
            if index == part.index:
                self.wake(due)
            elif self._ring is not None and due <= now_ms + int(_IDLE_POLL_S * 1000):
                self._ring(index, due)
        return []

    def wake(self, due_ms: int) -> None:
        with self._cond:
            # A timer due after the loop's own next look needs no wake-up: most commits
            # set only far timers (leases, execution timeouts), and each needless wake-up
            # is a pass of reads and a thread switch.
            if (
                self._sleeping_until is not None
                and due_ms >= self._sleeping_until
                and due_ms > self._clock.now_ms()
            ):
                return
            self._woken = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._woken = False
                self._sleeping_until = None
            try:
                self._dispatch_due()
                sleep_s = self._sleep_for()
            except StorageFull as exc:  # one line a second, not a traceback: it says all
                log.warning("scheduler iteration failed: %s", exc)
                sleep_s = _IDLE_POLL_S
            except Exception:  # the loop must survive a store hiccup
                log.exception("scheduler iteration failed")
                sleep_s = _IDLE_POLL_S
            with self._cond:
                if not self._woken and not self._stopping and sleep_s > 0:
                    self._sleeping_until = self._clock.now_ms() + int(sleep_s * 1000)
                    self._cond.wait(sleep_s)

    def _dispatch_due(self) -> None:
        now = self._clock.now_ms()
        with self._cond:
            free = {lane: self._capacity[lane] - self._queued[lane] for lane in self._pools}
            # Rows the read will meet and pass over: in flight, or failing and backing off
            # (oldest due first, they would otherwise fill the window and starve the rest).
            self._backoff = {k: until for k, until in self._backoff.items() if until > now}
            # A backlogged lease's row is not due (see the module's docstring).
            skip = len(self._in_flight) - self._backlogged + len(self._backoff)
            self._left_behind = False
        if not any(self._hungry(lane, self._capacity[lane] - n) for lane, n in free.items()):
            with self._cond:
                self._left_behind = True
            return
        self._end_leases(now)
        for timer in self._store.due_timers(now, skip + sum(free.values())):
            key = (timer.arn, timer.kind.value, timer.op_id)
            lane = _lane(timer)
            with self._cond:
                if key in self._in_flight or self._backoff.get(key, 0) > now:
                    self._left_behind = True
                    continue
                if self._queued[lane] >= self._capacity[lane]:
                    self._left_behind = True
                    continue
                self._in_flight.add(key)
                self._queued[lane] += 1
            self._pools[lane].submit(self._run, timer, key, lane)

    def _end_leases(self, now: int) -> None:
        """Fire, as due now, the INVOKE timers of leases held by refused outcomes."""
        with self._cond:
            for key, (when, delay) in list(self._ending.items()):
                if when > now or key in self._in_flight:
                    continue
                if self._queued[_INVOKE] >= self._capacity[_INVOKE]:
                    self._left_behind = True
                    return
                del self._ending[key]
                self._in_flight.add(key)
                self._queued[_INVOKE] += 1
                timer = Timer(key[0], TimerKind.INVOKE, "", now)
                self._pools[_INVOKE].submit(self._run, timer, key, _INVOKE, delay)

    def _refused(self, key: tuple[str, str, str], exc: Exception, last_delay: int) -> None:
        """An invocation's work failed: if the store refused it, end its lease soon."""
        if isinstance(exc, Unavailable):
            delay = min(last_delay * 2, _LEASE_END_CAP_MS) if last_delay else _LEASE_END_FIRST_MS
            when = self._clock.now_ms() + delay
            with self._cond:
                self._ending[key] = (when, delay)
            self.wake(when)

    def reserve(self, arn: str) -> _Slot | None:
        if not self._partition.owns(arn):
            return None  # its INVOKE timer runs it, in the process that owns it
        key = (arn, TimerKind.INVOKE.value, "")
        with self._cond:
            if self._stopping or key in self._in_flight:
                return None
            # Behind the backlog if there is one: first come, first invoked.
            if self._backlogged == 0 and self._queued[_INVOKE] < self._capacity[_INVOKE]:
                self._in_flight.add(key)
                self._queued[_INVOKE] += 1
                return _Slot(self, key)
            if self._backlogged >= self._backlog_max:
                return None
            self._in_flight.add(key)
            self._backlogged += 1
        return _Slot(self, key, queued=True)

    def _enqueue(self, work: Callable[[], None], key: tuple[str, str, str]) -> None:
        """A queued slot's work: run now if the lane has room after all, else waits."""
        with self._cond:
            self._backlog.append((work, key))
            self._take_backlog()

    def _take_backlog(self) -> None:
        """Hand the backlog's oldest to the lane while fewer than its threads are busy
        (the loop fills the rest from rows). Called holding `_cond`."""
        pool = self._pools[_INVOKE]
        while self._backlog and self._queued[_INVOKE] < self._threads[_INVOKE]:
            work, key = self._backlog.popleft()
            self._backlogged -= 1
            self._queued[_INVOKE] += 1
            try:
                pool.submit(self._run_reserved, work, key)
            except RuntimeError:  # the pool is shut down: stopping; the lease timer remains
                self._queued[_INVOKE] -= 1
                self._in_flight.discard(key)

    def _unreserve(self, key: tuple[str, str, str]) -> None:
        """A queued slot given back unused."""
        with self._cond:
            self._in_flight.discard(key)
            self._backlogged -= 1

    def _run_reserved(self, work: Callable[[], None], key: tuple[str, str, str]) -> None:
        try:
            work()
            if self._ending:  # rarely: no lock taken per invocation for it
                with self._cond:
                    self._ending.pop(key, None)
        except Exception as exc:
            if not self._stopping:
                # The lease's timer is a row: it runs the invocation again when due, or
                # sooner if the store refused the outcome.
                if isinstance(exc, StorageFull):
                    log.warning("invocation %s failed; retrying soon: %s", key, exc)
                else:
                    log.exception("invocation %s failed; its lease timer retries it", key)
                self._refused(key, exc, 0)
        finally:
            self._free(key, _INVOKE)

    def _free(self, key: tuple[str, str, str], lane: str) -> None:
        with self._cond:
            self._in_flight.discard(key)
            self._queued[lane] -= 1
            if self._backlog and lane == _INVOKE:
                self._take_backlog()
            # Only a pass that left work behind needs another one now, and only once the
            # lane is hungry; otherwise the timers this one set have woken the loop.
            if self._left_behind and self._hungry(lane, self._queued[lane]):
                self._woken = True
                self._cond.notify_all()

    def _run(self, timer: Timer, key: tuple[str, str, str], lane: str, ending: int = 0) -> None:
        """`ending`: this fires a lease's early end, set after that delay (0: a row's)."""
        try:
            boundary(Kind.TIMER, "before")
            self._handler(timer)
            boundary(Kind.TIMER, "after")
            with self._cond:
                self._backoff.pop(key, None)
                self._ending.pop(key, None)
        except Exception as exc:
            if self._stopping:
                # Shutting down: the sandbox is gone under it. The row stays; the next
                # start fires it again (an invocation's lease lapses and is re-run).
                log.info("timer %s interrupted by shutdown", key)
                return
            if isinstance(exc, StorageFull):
                log.warning("timer %s failed; retrying later: %s", key, exc)
            else:
                log.exception("timer %s failed; retrying later", key)
            with self._cond:
                self._backoff[key] = self._clock.now_ms() + _FAILURE_BACKOFF_MS
            if lane == _INVOKE:
                self._refused(key, exc, ending)
        finally:
            self._free(key, lane)

    def _hungry(self, lane: str, queued: int) -> bool:
        """Whether a pass should read for `lane`: no more handed to it than its threads."""
        return queued <= self._threads[lane]

    def _sleep_for(self) -> float:
        nxt = self._store.next_due_ms()
        with self._cond:
            ending = min((when for when, _ in self._ending.values()), default=None)
        if ending is not None:
            nxt = ending if nxt is None else min(nxt, ending)
        if nxt is None:
            return _IDLE_POLL_S
        delta = (nxt - self._clock.now_ms()) / 1000
        # A due timer that is in flight or backing off must not make this spin.
        return min(max(delta, 0.005), _IDLE_POLL_S)


class _Slot:
    """A reserved place in the invocation lane (`TimerScheduler.reserve`): free, or
    `queued` in its backlog."""

    def __init__(
        self, scheduler: TimerScheduler, key: tuple[str, str, str], queued: bool = False
    ) -> None:
        self._scheduler = scheduler
        self._key = key
        self._spent = False
        self.queued = queued

    def run(self, work: Callable[[], None]) -> None:
        self._spent = True
        if self.queued:
            self._scheduler._enqueue(work, self._key)
            return
        try:
            self._scheduler._pools[_INVOKE].submit(self._scheduler._run_reserved, work, self._key)
        except RuntimeError:  # the pool is shut down: stopping; the lease timer remains
            self._scheduler._free(self._key, _INVOKE)

    def release(self) -> None:
        if not self._spent:
            self._spent = True
            if self.queued:
                self._scheduler._unreserve(self._key)
            else:
                self._scheduler._free(self._key, _INVOKE)
