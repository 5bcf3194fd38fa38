"""The embedded scheduler's lanes: invocations are bounded; short timers never wait for them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from treadle.adapters.local.basics import SystemClock
from treadle.adapters.local.scheduler import TimerScheduler
from treadle.domain.errors import StorageFull
from treadle.domain.ports import Timer, TimerKind


class Rows:
    """The store's timer rows, as the scheduler reads them (due first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows: dict[tuple[str, str, str], Timer] = {}

    def put(self, timer: Timer) -> None:
        with self._lock:
            self.rows[(timer.arn, timer.kind.value, timer.op_id)] = timer

    def clear(self, timer: Timer) -> None:
        with self._lock:
            self.rows.pop((timer.arn, timer.kind.value, timer.op_id), None)

    def due_timers(self, now_ms: int, limit: int) -> list[Timer]:
        with self._lock:
            due = sorted(
                (t for t in self.rows.values() if t.due_ms <= now_ms), key=lambda t: t.due_ms
            )
        return due[:limit]

    def next_due_ms(self) -> int | None:
        with self._lock:
            return min((t.due_ms for t in self.rows.values()), default=None)


@pytest.fixture
def harness() -> Iterator[Callable[..., tuple[TimerScheduler, Rows]]]:
    started: list[TimerScheduler] = []

    def make(handler: Callable[[Timer], None], **lanes: int) -> tuple[TimerScheduler, Rows]:
        rows = Rows()

        def fire(timer: Timer) -> None:
            handler(timer)
            rows.clear(timer)  # the engine clears what it fired

        scheduler = TimerScheduler(rows, SystemClock(), fire, **lanes)  # type: ignore[arg-type]
        scheduler.start()
        started.append(scheduler)
        return scheduler, rows

    yield make
    for scheduler in started:
        scheduler.stop()


def _timer(kind: TimerKind, name: str) -> Timer:
    return Timer(f"arn:{name}", kind, "", SystemClock().now_ms())


def test_invocations_run_at_most_the_lane_width_at_once(
    harness: Callable[..., tuple[TimerScheduler, Rows]],
) -> None:
    lock = threading.Lock()
    running, peak, done = [0], [0], []

    def invoke(timer: Timer) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
            done.append(timer.arn)

    scheduler, rows = harness(invoke, workers=2, invoke_workers=3)
    for i in range(30):
        rows.put(_timer(TimerKind.INVOKE, f"e{i}"))
    scheduler.wake(0)
    deadline = time.monotonic() + 10
    while len(done) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(done) == 30  # every one ran, once
    assert len(set(done)) == 30
    assert peak[0] == 3


def test_a_wait_expiry_does_not_queue_behind_slow_invocations(
    harness: Callable[..., tuple[TimerScheduler, Rows]],
) -> None:
    release = threading.Event()
    fired: dict[str, float] = {}

    def handler(timer: Timer) -> None:
        if timer.kind is TimerKind.INVOKE:
            release.wait(10)  # tenant code that takes its time
        fired[timer.arn] = time.monotonic()

    scheduler, rows = harness(handler, workers=2, invoke_workers=2)
    for i in range(6):
        rows.put(_timer(TimerKind.INVOKE, f"slow{i}"))
    scheduler.wake(0)
    time.sleep(0.05)
    asked = time.monotonic()
    rows.put(_timer(TimerKind.WAIT, "wait"))
    scheduler.wake(0)
    deadline = time.monotonic() + 5
    while "arn:wait" not in fired and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    assert "arn:wait" in fired and fired["arn:wait"] - asked < 1.0
    assert not any(name.startswith("arn:slow") for name in fired if fired[name] < asked)


def test_failing_timers_backing_off_do_not_starve_the_others(
    harness: Callable[..., tuple[TimerScheduler, Rows]],
) -> None:
    fired: list[str] = []

    def handler(timer: Timer) -> None:
        if timer.arn.startswith("arn:bad"):
            raise RuntimeError("a store hiccup that lasts")
        fired.append(timer.arn)

    scheduler, rows = harness(handler, workers=1, invoke_workers=1)
    # More failing rows, due earlier, than a pass reads (2 per lane).
    for i in range(20):
        rows.put(Timer(f"arn:bad{i}", TimerKind.WAIT, "", 1))
    for i in range(3):
        rows.put(_timer(TimerKind.WAIT, f"good{i}"))
    scheduler.wake(0)
    deadline = time.monotonic() + 5
    while len(fired) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(fired) == ["arn:good0", "arn:good1", "arn:good2"]


def test_a_backlog_is_read_a_half_lane_at_a_time_not_once_per_freed_slot(
    harness: Callable[..., tuple[TimerScheduler, Rows]],
) -> None:
    done: list[str] = []

    def invoke(timer: Timer) -> None:
        time.sleep(0.002)
        done.append(timer.arn)

    scheduler, rows = harness(invoke, workers=2, invoke_workers=4)
    read = [0]
    due_timers = rows.due_timers

    def counting(now_ms: int, limit: int) -> list[Timer]:
        got = due_timers(now_ms, limit)
        read[0] += len(got)
        return got

    rows.due_timers = counting  # type: ignore[method-assign]
    n = 300
    for i in range(n):
        rows.put(_timer(TimerKind.INVOKE, f"run{i}"))
    scheduler.wake(0)
    deadline = time.monotonic() + 10
    while len(done) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(done) == n
    # A read per freed slot passes over every row in flight: ~9 rows per invocation
    # here (8 in flight + 1). A read per half lane: 8 + 4 rows per 4 invocations.
    assert read[0] / n < 5, read[0] / n


def test_an_invocation_whose_outcome_the_store_refused_has_its_lease_ended_soon(
    harness: Callable[..., tuple[TimerScheduler, Rows]],
) -> None:
    """The lease's row is due at the function's timeout plus a margin; the invocation is
    over, so the loop fires its INVOKE timer again after a short backoff, doubling while
    the store still refuses."""
    fired: list[Timer] = []
    again = threading.Event()

    def invoke(timer: Timer) -> None:
        fired.append(timer)
        if len(fired) <= 2:
            # The lease was taken (its timer moved to the lease's end), then the
            # outcome's commit was refused.
            rows.put(Timer(timer.arn, TimerKind.INVOKE, "", SystemClock().now_ms() + 600_000))
            raise StorageFull("No space left")
        again.set()

    scheduler, rows = harness(invoke)
    first = _timer(TimerKind.INVOKE, "refused")
    rows.put(first)
    scheduler.wake(first.due_ms)
    assert again.wait(5), f"the lease was not ended early: fired {len(fired)} time(s)"
    assert len(fired) == 3
    # Each early end is a lapsed lease for the engine: due after the invocation began.
    assert fired[0].due_ms < fired[1].due_ms < fired[2].due_ms
    assert fired[2].due_ms - fired[1].due_ms >= fired[1].due_ms - fired[0].due_ms  # backs off


def test_a_start_handed_over_whose_outcome_the_store_refused_has_its_lease_ended_soon(
    harness: Callable[..., tuple[TimerScheduler, Rows]],
) -> None:
    fired: list[Timer] = []
    done = threading.Event()

    def invoke(timer: Timer) -> None:
        fired.append(timer)
        done.set()

    scheduler, _ = harness(invoke)
    slot = scheduler.reserve("arn:started")
    assert slot is not None

    def work() -> None:
        raise StorageFull("No space left")

    slot.run(work)
    assert done.wait(5)
    assert [(t.arn, t.kind) for t in fired] == [("arn:started", TimerKind.INVOKE)]


def test_an_invocation_that_failed_otherwise_waits_for_its_leases_end(
    harness: Callable[..., tuple[TimerScheduler, Rows]],
) -> None:
    """A bug is not a refused commit: firing again would only repeat it."""
    fired: list[Timer] = []

    def invoke(timer: Timer) -> None:
        fired.append(timer)
        rows.put(Timer(timer.arn, TimerKind.INVOKE, "", SystemClock().now_ms() + 600_000))
        raise ValueError("a bug")

    scheduler, rows = harness(invoke)
    first = _timer(TimerKind.INVOKE, "bug")
    rows.put(first)
    scheduler.wake(first.due_ms)
    time.sleep(1.5)  # three times the first early end's delay
    assert len(fired) == 1
