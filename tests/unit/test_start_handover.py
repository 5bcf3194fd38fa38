"""A start that finds a free invocation slot takes its first lease in its own commit and
hands the invocation straight over (`InvocationLanes`): one commit fewer, the same
history, the lane's bound kept, and a crash before the hand-off recovered like any
lapsed lease. Without a free slot, the INVOKE timer runs it as before. A change that
makes a parked execution invocable (a wait elapsed, a callback answered) does the same
(`domain/engine/handover.py`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.engine_harness import Harness, step
from treadle.adapters.local.basics import SystemClock
from treadle.adapters.local.scheduler import TimerScheduler
from treadle.domain.ports import Commit, TimerKind


class Lanes:
    """Slots handed out up to `width`; work kept until the test runs it."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.taken = 0
        self.pending: list[Callable[[], None]] = []

    def reserve(self, arn: str) -> Lanes.Slot | None:
        if self.taken >= self.width:
            return None
        self.taken += 1
        return Lanes.Slot(self)

    def run_pending(self) -> None:
        while self.pending:
            self.pending.pop(0)()

    class Slot:
        def __init__(self, lanes: Lanes) -> None:
            self.lanes = lanes

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


def test_the_schedulers_slots_count_against_the_invocation_lane() -> None:
    class NoRows:
        def due_timers(self, now_ms: int, limit: int) -> list[Any]:
            return []

        def next_due_ms(self) -> None:
            return None

    scheduler = TimerScheduler(NoRows(), SystemClock(), lambda t: None, invoke_workers=1)  # type: ignore[arg-type]
    scheduler.start()
    first = scheduler.reserve("arn:a")
    second = scheduler.reserve("arn:b")  # the lane's queue holds one more
    assert first is not None and second is not None
    assert scheduler.reserve("arn:c") is None  # full: invoke_workers x 2
    assert scheduler.reserve("arn:a") is None  # and never twice for one execution
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
