"""Invocations under the faults the AWS fault matrix injects (tests/integration/
test_aws_faults.py found both):

- the runtime refuses an invocation (Lambda throttling, Lambda unreachable): the lease
  goes back at once and the invocation is tried again after the retry delay, counting
  no failed attempt (it was held for the function's whole timeout, then counted as a
  crash);
- a copy of the INVOKE timer that started the running invocation arrives (SQS, at
  least once, even to a second consumer while the first runs): nothing happens (it was
  taken for a lease that ran out: a crash counted, the invocation started again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.engine_harness import Harness, step
from treadle.domain.errors import Throttled, Unavailable
from treadle.domain.ports import Timer, TimerKind


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_a_refused_invocation_is_retried_after_a_second_without_counting_an_attempt(
    h: Harness,
) -> None:
    def refused(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        raise Throttled("Lambda is throttling (TooManyRequestsException); back off.")

    def unreachable(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        raise Unavailable("Lambda unreachable (read timeout).")

    def done(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        return {"Status": "SUCCEEDED", "Result": '"ok"'}

    # More refusals than max_invocation_attempts (3): none of them is a failed attempt.
    h.runtime.scripts += [refused, unreachable, refused, refused, done]
    ex, _ = h.engine.start(h.fn, None, None)
    for tries in range(1, 5):
        h.pump()
        assert len(h.runtime.envelopes) == tries  # not again before the delay
        assert not h.store.get(ex.arn).invocation_active  # the lease is not held
        h.clock.advance(1_000)
    h.pump()
    final = h.store.get(ex.arn)
    assert final.status.value == "SUCCEEDED" and final.invocation_attempts == 0
    # Nothing ran for the refused ones: one invocation in the history.
    assert h.history(ex.arn) == ["ExecutionStarted", "InvocationCompleted", "ExecutionSucceeded"]


def test_a_refused_invocation_that_ran_after_all_is_fenced(h: Harness) -> None:
    envelopes: list[dict[str, Any]] = []

    def refused_but_ran(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        envelopes.append(env)
        raise Unavailable("Lambda unreachable (read timeout).")

    def done(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        return {"Status": "SUCCEEDED", "Result": '"ok"'}

    h.runtime.scripts += [refused_but_ran, done]
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    before = h.history(ex.arn)
    # Its handler checkpoints late: nothing recorded, no token to go on with.
    late = h.checkpoint(envelopes[0], [step("late", "START")])
    assert late.CheckpointToken is None and h.history(ex.arn) == before
    h.clock.advance(1_000)
    h.pump()
    assert h.store.get(ex.arn).status.value == "SUCCEEDED"


def test_a_copy_of_the_timer_that_started_the_running_invocation_does_nothing(
    h: Harness,
) -> None:
    started_at = h.clock.now_ms()

    def first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        hh.checkpoint(env, [step("s", "START")])
        # The same message, handled by another consumer while this invocation runs.
        hh.engine.fire(Timer(env["DurableExecutionArn"], TimerKind.INVOKE, "", started_at))
        assert len(hh.runtime.envelopes) == 1  # not invoked again
        return {"Status": "SUCCEEDED", "Result": '"ok"'}

    h.runtime.scripts.append(first)
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    final = h.store.get(ex.arn)
    assert final.status.value == "SUCCEEDED" and final.invocation_attempts == 0
    assert h.history(ex.arn).count("InvocationCompleted") == 1


def test_a_lease_that_runs_out_is_still_a_crash_and_a_restart_still_recovers(
    h: Harness,
) -> None:
    def hangs(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        # The platform restarts (as if this process had died) in the same millisecond.
        assert hh.engine.recover() == 1
        hh.clock.advance(1)
        hh.pump()  # the lease is over: counted as a crash, retried
        return {"Status": "SUCCEEDED", "Result": '"too late"'}  # fenced

    def done(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        return {"Status": "SUCCEEDED", "Result": '"ok"'}

    h.runtime.scripts += [hangs, done]
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    h.clock.advance(2_000)
    h.pump()
    final = h.store.get(ex.arn)
    assert final.status.value == "SUCCEEDED" and final.result == '"ok"'
    assert "Runtime.ExitError" in str(h.store.events(ex.arn, after_id=0, limit=100))
