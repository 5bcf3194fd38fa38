"""A start that finds a free invocation slot takes its first lease in its own commit and
hands the invocation straight over (`InvocationLanes`): one commit fewer, the same
history, the lane's bound kept, and a crash before the hand-off recovered like any
lapsed lease. A change that makes a parked execution invocable (a wait elapsed, a
callback answered) does the same (`domain/engine/handover.py`). A full lane queues the
invocation in memory behind the others, its lease marked so that a restart gives it back
without a crash counted; past the backlog's bound, the INVOKE timer runs it as before."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from support.engine_harness import Harness, step
from treadle.adapters.local.basics import SystemClock
from treadle.adapters.local.scheduler import TimerScheduler
from treadle.domain.ports import Commit, Timer, TimerKind


class Lanes:
    """Slots handed out up to `width`, then `backlog` queued ones; work kept until the
    test runs it."""

    def __init__(self, width: int, backlog: int = 0) -> None:
        self.width = width
        self.backlog = backlog
        self.taken = 0
        self.pending: list[Callable[[], None]] = []

    def reserve(self, arn: str) -> Lanes.Slot | None:
        if self.taken >= self.width + self.backlog:
            return None
        self.taken += 1
        return Lanes.Slot(self, queued=self.taken > self.width)

    def run_pending(self) -> None:
        while self.pending:
            self.pending.pop(0)()

    class Slot:
        def __init__(self, lanes: Lanes, queued: bool) -> None:
            self.lanes = lanes
            self.queued = queued

        def run(self, work: Callable[[], None]) -> None:
            def then_free() -> None:
                try:
                    work()
                finally:
                    self.lanes.taken -= 1

            self.lanes.pending.append(then_free)

        def release(self) -> None:
            self.lanes.taken -= 1


def one_step(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
    hh.checkpoint(env, [step("s1", "START"), step("s1", "SUCCEED", Payload='"ok"')])
    return {"Status": "SUCCEEDED", "Result": '"done"'}


def _counting(h: Harness) -> list[Commit]:
    commits: list[Commit] = []
    create, commit = h.store.create, h.store.commit

    def counted_create(c: Commit) -> None:
        commits.append(c)
        create(c)

    def counted_commit(c: Commit) -> None:
        commits.append(c)
        commit(c)

    h.store.create = counted_create  # type: ignore[method-assign]
    h.store.commit = counted_commit  # type: ignore[method-assign]
    return commits


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_a_start_with_a_free_slot_commits_its_lease_and_runs_one_commit_sooner(
    h: Harness, tmp_path: Path
) -> None:
    plain = Harness(tmp_path / "plain")
    plain_commits = _counting(plain)
    plain.runtime.scripts.append(one_step)
    ex_plain, _ = plain.engine.start(plain.fn, "n", '"in"')
    plain.pump()

    lanes = Lanes(width=4)
    h.engine.lanes = lanes
    commits = _counting(h)
    h.runtime.scripts.append(one_step)
    ex, _ = h.engine.start(h.fn, "n", '"in"')
    started = h.store.load(ex.arn).execution
    assert started.invocation_active and started.generation == 1  # leased by the start
    assert h.store.due_timers(h.clock.now_ms(), 10) == []  # no INVOKE timer due now
    assert lanes.taken == 1 and len(lanes.pending) == 1
    lanes.run_pending()
    assert lanes.taken == 0

    done = h.store.get(ex.arn)
    assert done.status.value == "SUCCEEDED" and done.result == '"done"'
    assert h.history(ex.arn) == plain.history(ex_plain.arn)
    assert len(commits) == len(plain_commits) - 1

    def first_state(harness: Harness) -> list[dict[str, Any]]:
        ops = harness.runtime.envelopes[0]["InitialExecutionState"]["Operations"]
        return [{k: v for k, v in op.items() if k != "Id"} for op in ops]  # ids are random

    assert first_state(h) == first_state(plain)


def test_without_a_free_slot_the_invoke_timer_runs_it(h: Harness) -> None:
    h.engine.lanes = Lanes(width=0)
    h.runtime.scripts.append(one_step)
    ex, _ = h.engine.start(h.fn, "n", '"in"')
    assert not h.store.load(ex.arn).execution.invocation_active
    due = h.store.due_timers(h.clock.now_ms(), 10)
    assert [t.kind for t in due] == [TimerKind.INVOKE]
    h.pump()
    assert h.store.get(ex.arn).status.value == "SUCCEEDED"


def test_a_queued_start_takes_no_slot(h: Harness) -> None:
    lanes = Lanes(width=4)
    h.engine.lanes = lanes
    ex, _ = h.engine.start(h.fn, "n", '"in"', queued=True)
    assert lanes.taken == 0 and h.store.get(ex.arn).status.value == "QUEUED"


def test_a_repeated_start_gives_its_slot_back(h: Harness) -> None:
    lanes = Lanes(width=4)
    h.engine.lanes = lanes
    h.runtime.scripts.append(one_step)
    h.engine.start(h.fn, "n", '"in"')
    lanes.run_pending()
    _, created = h.engine.start(h.fn, "n", '"in"')
    assert not created and lanes.taken == 0 and lanes.pending == []


def test_a_crash_between_the_start_and_its_hand_off_is_recovered_as_a_lapsed_lease(
    h: Harness,
) -> None:
    lanes = Lanes(width=4)
    h.engine.lanes = lanes
    ex, _ = h.engine.start(h.fn, "n", '"in"')
    lanes.pending.clear()  # the process died: the invocation never ran
    h.engine.lanes = None  # the restarted process
    assert h.engine.recover() == 1  # the lease lapsed: retried after its backoff
    h.runtime.scripts.append(one_step)
    h.clock.advance(60_000)
    h.pump()
    done = h.store.get(ex.arn)
    assert done.status.value == "SUCCEEDED"
    assert "InvocationCompleted" in h.history(ex.arn)


class NoRows:
    """A store with no due timers: the lane's slots alone."""

    def due_timers(self, now_ms: int, limit: int) -> list[Any]:
        return []

    def next_due_ms(self) -> None:
        return None


def _rowless(backlog_max: int) -> TimerScheduler:
    """A scheduler over no rows, with one invocation thread (two slots) and a backlog."""
    return TimerScheduler(
        NoRows(),  # type: ignore[arg-type]
        SystemClock(),
        lambda t: None,
        invoke_workers=1,
        backlog_max=backlog_max,
    )


def test_the_schedulers_slots_count_against_the_invocation_lane() -> None:
    scheduler = _rowless(backlog_max=1)
    scheduler.start()
    first = scheduler.reserve("arn:a")
    second = scheduler.reserve("arn:b")  # the lane's queue holds one more
    assert first is not None and second is not None
    assert not first.queued and not second.queued
    queued = scheduler.reserve("arn:c")  # full (invoke_workers x 2): behind them
    assert queued is not None and queued.queued
    assert scheduler.reserve("arn:d") is None  # and the backlog (of one) is full
    assert scheduler.reserve("arn:a") is None  # never twice for one execution
    queued.release()
    second.release()
    ran: list[str] = []
    third = scheduler.reserve("arn:c")
    assert third is not None
    done = threading.Event()
    third.run(lambda: (ran.append("c"), done.set()))
    assert done.wait(5) and ran == ["c"]
    for _ in range(100):  # its slot comes back once the work is over
        if (fourth := scheduler.reserve("arn:d")) is not None:
            break
        time.sleep(0.01)
    assert fourth is not None
    scheduler.stop()


# -- a parked execution made invocable: the same hand-over -----------------------------


def wait_then_done(h: Harness) -> None:
    def first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        wait = {"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 5}}
        hh.checkpoint(env, [wait])
        return {"Status": "PENDING"}

    def second(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        ops = {o["Id"]: o for o in env["InitialExecutionState"]["Operations"]}
        assert ops["w"]["Status"] == "SUCCEEDED"
        return {"Status": "SUCCEEDED", "Result": "2"}

    h.runtime.scripts += [first, second]


def test_a_wait_that_elapses_with_a_free_slot_commits_the_lease_with_it(
    h: Harness, tmp_path: Path
) -> None:
    plain = Harness(tmp_path / "plain")
    wait_then_done(plain)
    ex_plain, _ = plain.engine.start(plain.fn, "n", None)
    plain.pump()
    plain_commits = _counting(plain)
    plain.clock.advance(5_000)
    plain.pump()

    wait_then_done(h)
    ex, _ = h.engine.start(h.fn, "n", None)
    h.pump()  # the first invocation parks on the wait
    lanes = Lanes(width=4)
    h.engine.lanes = lanes
    commits = _counting(h)
    h.clock.advance(5_000)
    h.pump()  # fires the WAIT timer only: its commit takes the lease
    parked = h.store.load(ex.arn).execution
    assert parked.invocation_active and parked.generation == 2
    assert h.store.due_timers(h.clock.now_ms(), 10) == []  # no INVOKE timer due now
    assert lanes.taken == 1 and len(lanes.pending) == 1
    lanes.run_pending()
    assert lanes.taken == 0
    assert h.store.get(ex.arn).status.value == "SUCCEEDED"
    assert h.history(ex.arn) == plain.history(ex_plain.arn)
    assert len(commits) == len(plain_commits) - 1
    assert (
        h.runtime.envelopes[1]["InitialExecutionState"]["Operations"][1:]
        == (plain.runtime.envelopes[1]["InitialExecutionState"]["Operations"][1:])
    )


def test_a_wait_that_elapses_without_a_free_slot_leaves_it_to_the_invoke_timer(
    h: Harness,
) -> None:
    wait_then_done(h)
    ex, _ = h.engine.start(h.fn, "n", None)
    h.pump()
    h.engine.lanes = Lanes(width=0)
    h.clock.advance(5_000)
    [wait_timer] = h.store.due_timers(h.clock.now_ms(), 10)
    h.engine.fire(wait_timer)
    assert not h.store.load(ex.arn).execution.invocation_active
    assert [t.kind for t in h.store.due_timers(h.clock.now_ms(), 10)] == [TimerKind.INVOKE]
    h.pump()
    assert h.store.get(ex.arn).status.value == "SUCCEEDED"


def test_a_timer_that_asks_for_no_invocation_gives_its_slot_back(h: Harness) -> None:
    wait_then_done(h)
    ex, _ = h.engine.start(h.fn, "n", None)
    h.pump()
    h.engine.stop(ex.arn, None)  # closed: the WAIT timer finds nothing to do
    lanes = Lanes(width=4)
    h.engine.lanes = lanes
    h.clock.advance(5_000)
    h.pump()
    assert lanes.taken == 0 and lanes.pending == []
    assert h.store.get(ex.arn).status.value == "STOPPED"


def test_a_callback_answered_with_a_free_slot_hands_its_invocation_over(h: Harness) -> None:
    ids: dict[str, str] = {}

    def first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        res = hh.checkpoint(env, [{"Id": "c", "Type": "CALLBACK", "Action": "START"}])
        [op] = [o for o in res.Operations if o.Id == "c"]
        assert op.CallbackDetails is not None and op.CallbackDetails.CallbackId
        ids["c"] = op.CallbackDetails.CallbackId
        return {"Status": "PENDING"}

    def second(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        ops = {o["Id"]: o for o in env["InitialExecutionState"]["Operations"]}
        assert ops["c"]["CallbackDetails"]["Result"] == '"yes"'
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts += [first, second]
    ex, _ = h.engine.start(h.fn, "n", None)
    h.pump()
    lanes = Lanes(width=4)
    h.engine.lanes = lanes
    h.engine.complete_callback(h.fn.tenant, ids["c"], result='"yes"')
    assert h.store.load(ex.arn).execution.invocation_active
    assert len(lanes.pending) == 1
    lanes.run_pending()
    assert h.store.get(ex.arn).status.value == "SUCCEEDED"
    assert "CallbackSucceeded" in h.history(ex.arn)


def test_a_crash_between_a_resume_and_its_hand_off_is_recovered_as_a_lapsed_lease(
    h: Harness,
) -> None:
    wait_then_done(h)
    ex, _ = h.engine.start(h.fn, "n", None)
    h.pump()
    h.engine.lanes = Lanes(width=4)
    h.clock.advance(5_000)
    h.pump()  # the lease is committed; the process dies before the slot runs it
    h.engine.lanes = None  # the restarted process
    assert h.engine.recover() == 1
    h.clock.advance(60_000)
    h.pump()
    assert h.store.get(ex.arn).status.value == "SUCCEEDED"
    assert h.history(ex.arn).count("WaitSucceeded") == 1


# -- a full lane: the invocation queued in memory behind the others --------------------


def _completed(h: Harness, arn: str) -> list[dict[str, Any]]:
    events = h.store.events(arn, after_id=0, limit=1000)
    return [
        (e.model_extra or {})["InvocationCompletedDetails"]
        for e in events
        if e.EventType == "InvocationCompleted"
    ]


def test_a_start_queued_behind_a_full_lane_commits_its_lease_marked_and_runs_later(
    h: Harness, tmp_path: Path
) -> None:
    plain = Harness(tmp_path / "plain")
    plain.runtime.scripts.append(one_step)
    ex_plain, _ = plain.engine.start(plain.fn, "n", '"in"')
    plain.pump()

    lanes = Lanes(width=0, backlog=1)
    h.engine.lanes = lanes
    h.runtime.scripts.append(one_step)
    ex, _ = h.engine.start(h.fn, "n", '"in"')
    leased = h.store.load(ex.arn).execution
    assert leased.invocation_active and leased.lease_queued and leased.generation == 1
    # Its lease's row allows for the wait in the backlog: not due for the loop to read.
    config = h.engine.config
    lease_s = h.fn.timeout_s + config.lease_margin_s + config.queued_lease_allowance_s

    def invoke_rows(after_s: int) -> int:
        due = h.store.due_timers(h.clock.now_ms() + after_s * 1000, 10)
        return sum(t.kind is TimerKind.INVOKE for t in due)

    assert (invoke_rows(lease_s - 1), invoke_rows(lease_s)) == (0, 1)
    h.clock.advance(2_000)  # it waits behind the others
    ran_at = h.clock.now_ms()
    lanes.run_pending()

    done = h.store.load(ex.arn).execution
    assert done.status.value == "SUCCEEDED" and not done.lease_queued
    assert h.history(ex.arn) == plain.history(ex_plain.arn)
    [details] = _completed(h, ex.arn)
    assert details["StartTimestamp"] == ran_at  # when it ran, not when it was queued


def test_a_restart_gives_a_queued_lease_back_at_once_and_counts_no_crash(h: Harness) -> None:
    h.engine.lanes = Lanes(width=0, backlog=1)
    ex, _ = h.engine.start(h.fn, "n", '"in"')
    h.engine.lanes = None  # the process died with its backlog; this is the next one
    assert h.engine.recover() == 1
    given_back = h.store.load(ex.arn).execution
    assert not given_back.invocation_active and not given_back.lease_queued
    due = h.store.due_timers(h.clock.now_ms(), 10)
    assert [t.kind for t in due] == [TimerKind.INVOKE]  # now, not after a retry's backoff
    h.runtime.scripts.append(one_step)
    h.pump()
    done = h.store.load(ex.arn).execution
    assert done.status.value == "SUCCEEDED" and done.invocation_attempts == 0
    assert len(_completed(h, ex.arn)) == 1  # its own; no crash recorded before it
    assert "Error" not in _completed(h, ex.arn)[0]


def test_an_invocation_lease_that_ran_is_still_charged_a_crash_on_restart(h: Harness) -> None:
    h.engine.lanes = Lanes(width=1)
    ex, _ = h.engine.start(h.fn, "n", '"in"')  # a free slot: not queued
    assert not h.store.load(ex.arn).execution.lease_queued
    h.engine.lanes = None
    assert h.engine.recover() == 1
    h.runtime.scripts.append(one_step)
    h.clock.advance(60_000)
    h.pump()
    crash, ok = _completed(h, ex.arn)
    assert crash["Error"]["Payload"]["ErrorType"] == "Runtime.ExitError" and "Error" not in ok


def test_a_queued_lease_whose_timer_fires_after_its_process_died_counts_no_crash(
    h: Harness,
) -> None:
    h.engine.config = replace(h.engine.config, queued_lease_allowance_s=60)
    h.engine.lanes = Lanes(width=0, backlog=1)
    ex, _ = h.engine.start(h.fn, "n", '"in"')
    h.engine.lanes = None  # died, and nothing recovered it: its lease's timer lapses
    h.runtime.scripts.append(one_step)
    h.clock.advance(600_000)
    h.pump()
    done = h.store.load(ex.arn).execution
    assert done.status.value == "SUCCEEDED" and done.invocation_attempts == 0
    assert ["Error" in d for d in _completed(h, ex.arn)] == [False]


def test_a_batch_start_hands_each_execution_over_free_then_queued(h: Harness) -> None:
    lanes = Lanes(width=2, backlog=2)
    h.engine.lanes = lanes
    commits = _counting(h)
    created = h.engine.start_batch(h.fn, [(f"n{i}", None) for i in range(5)], None, [False] * 5)
    arns = [r[0].arn for r in created if isinstance(r, tuple)]
    leases = [h.store.load(arn).execution for arn in arns]
    assert [(x.invocation_active, x.lease_queued) for x in leases] == [
        (True, False), (True, False), (True, True), (True, True), (False, False)
    ]  # fmt: skip
    assert [t.arn for t in h.store.due_timers(h.clock.now_ms(), 10)] == [arns[4]]  # no slot
    h.runtime.scripts += [one_step] * 5
    lanes.run_pending()
    h.pump()
    assert {h.store.get(arn).status.value for arn in arns} == {"SUCCEEDED"}
    # After the batch's one creation (with the leases): each its checkpoint and its end,
    # and the fifth, without a slot, its lease.
    assert len(commits) == 5 * 2 + 1


def test_a_batch_that_fails_gives_its_slots_back(h: Harness) -> None:
    lanes = Lanes(width=1, backlog=1)
    h.engine.lanes = lanes

    def refused(commits: Any) -> list[bool]:
        raise RuntimeError("disk on fire")

    h.store.create_batch = refused  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        h.engine.start_batch(h.fn, [("a", None), ("b", None)], None, [False, False])
    assert lanes.taken == 0 and lanes.pending == []


def test_a_full_lane_queues_in_order_and_leaves_room_for_due_rows() -> None:
    """Queued slots run oldest first, and a due row the loop reads still gets into the
    lane meanwhile (the backlog keeps no more than the lane's threads busy)."""
    gate = threading.Event()
    order: list[str] = []
    row_ran = threading.Event()
    lock = threading.Lock()

    class OneRow:
        def __init__(self) -> None:
            self.rows = [Timer("arn:row", TimerKind.INVOKE, "", 0)]

        def due_timers(self, now_ms: int, limit: int) -> list[Timer]:
            return self.rows[:limit]

        def next_due_ms(self) -> int | None:
            return 0 if self.rows else None

    store = OneRow()

    def fire(timer: Timer) -> None:
        store.rows = []
        with lock:
            order.append("row")
        row_ran.set()

    scheduler = TimerScheduler(
        store,  # type: ignore[arg-type]
        SystemClock(),
        fire,
        invoke_workers=2,
        backlog_max=10,
    )
    # Four free slots (two threads, two more waiting), all held at the gate...
    busy = [scheduler.reserve(f"arn:busy{i}") for i in range(4)]
    queued = [scheduler.reserve(f"arn:q{i}") for i in range(6)]
    assert all(s is not None and not s.queued for s in busy)
    assert all(s is not None and s.queued for s in queued)
    for i, slot in enumerate(busy):
        assert slot is not None
        slot.run(lambda i=i: (gate.wait(10), order.append(f"busy{i}")))
    running = threading.Semaphore(0)

    def queued_work(name: str) -> Callable[[], None]:
        def work() -> None:
            with lock:
                order.append(name)
            time.sleep(0.05)
            running.release()

        return work

    for i, slot in enumerate(queued):
        assert slot is not None
        slot.run(queued_work(f"q{i}"))
    scheduler.start()  # ...while the loop has a due row to hand to the lane
    gate.set()
    for _ in queued:
        assert running.acquire(timeout=10)
    assert row_ran.wait(10)
    scheduler.stop()
    assert [n for n in order if n.startswith("q")] == [f"q{i}" for i in range(6)]
    assert order.index("row") < order.index("q5")  # not behind the whole backlog


def test_a_stopping_lane_drops_its_backlog_and_queues_nothing_more() -> None:
    """Stopping leaves the queued leases to the next start (`Engine.recover` gives them
    back): nothing of the backlog runs once the pools are shut."""
    scheduler = _rowless(backlog_max=5)
    scheduler.start()
    gate = threading.Event()
    held = [scheduler.reserve(f"arn:busy{i}") for i in range(2)]
    for slot in held:
        assert slot is not None
        slot.run(lambda: gate.wait(10) and None)
    ran: list[str] = []
    queued = scheduler.reserve("arn:q")
    assert queued is not None and queued.queued
    queued.run(lambda: ran.append("q"))
    scheduler.stop()
    gate.set()
    time.sleep(0.1)
    assert ran == [] and scheduler.reserve("arn:later") is None
