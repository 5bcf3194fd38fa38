"""Engine semantics with a scripted runtime: each test's 'handler' checkpoints directly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from support.engine_harness import Harness, step
from treadle.domain.engine import EngineConfig
from treadle.domain.errors import (
    CallbackTimedOut,
    ExecutionAlreadyStarted,
    InvalidParameter,
    InvalidToken,
    Unavailable,
)
from treadle.domain.models import CheckpointRequest, DurableConfig, ErrorObject
from treadle.domain.ports import Timer, TimerKind


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_step_then_success_records_dense_history(h: Harness) -> None:
    def script(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        ops = env["InitialExecutionState"]["Operations"]
        assert (
            ops[0]["Type"] == "EXECUTION" and ops[0]["ExecutionDetails"]["InputPayload"] == '"in"'
        )
        res = hh.checkpoint(env, [step("s1", "START"), step("s1", "SUCCEED", Payload='"ok"')])
        assert res.CheckpointToken and {o.Id for o in res.Operations} == {"s1"}
        return {"Status": "SUCCEEDED", "Result": '"done"'}

    h.runtime.scripts.append(script)
    ex, created = h.engine.start(h.fn, "n1", '"in"')
    assert created
    h.pump()
    final = h.store.get(ex.arn)
    assert final.status.value == "SUCCEEDED" and final.result == '"done"'
    events = h.store.events(ex.arn, after_id=0, limit=100)
    assert [e.EventType for e in events] == [
        "ExecutionStarted",
        "StepStarted",
        "StepSucceeded",
        "InvocationCompleted",
        "ExecutionSucceeded",
    ]
    assert [e.EventId for e in events] == [1, 2, 3, 4, 5]
    assert ex.arn in h.closed


def test_start_is_idempotent_on_name(h: Harness) -> None:
    a, created_a = h.engine.start(h.fn, "same", '{"x":1}')
    b, created_b = h.engine.start(h.fn, "same", '{"x":1}')
    assert created_a and not created_b and a.arn == b.arn
    with pytest.raises(ExecutionAlreadyStarted):
        h.engine.start(h.fn, "same", '{"x":2}')


def test_stale_and_forged_tokens(h: Harness) -> None:
    seen: dict[str, Any] = {}

    def first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        seen["env"] = env
        res = hh.checkpoint(env, [step("s1", "START")])
        with pytest.raises(InvalidToken):  # a token is consumed by its checkpoint
            hh.checkpoint(env, [step("s2", "START")])
        with pytest.raises(InvalidToken):
            hh.checkpoint(env, [], token="Zm9yZ2VkOjE6MA" + "A" * 24)
        seen["token"] = res.CheckpointToken
        return {"Status": "PENDING"}

    h.runtime.scripts.append(first)
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    before = h.history(ex.arn)
    # The invocation ended: its latest token is fenced, the response carries no token.
    res = h.checkpoint(seen["env"], [step("s9", "START")], token=seen["token"])
    assert res.CheckpointToken is None and res.Operations == []
    assert h.history(ex.arn) == before


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ([{"Id": "e", "Type": "EXECUTION", "Action": "SUCCEED"}, step("s", "START")], "last"),
        ([step("s", "START"), step("s", "START")], "same ID"),
        ([step("s", "SUCCEED"), step("s", "FAIL")], "same ID"),
        ([step("s", "START", ParentId="nope")], "parent"),
        ([{"Id": "w", "Type": "WAIT", "Action": "SUCCEED"}], "Invalid action"),
        ([{"Id": "w", "Type": "WAIT", "Action": "START"}], "WaitSeconds"),
        ([step("s", "FAIL", Payload='"x"')], "Payload"),
        ([step("s", "START", Payload="x" * (256 * 1024 + 1))], "exceeds"),
    ],
)
def test_invalid_batches_are_refused_whole(
    h: Harness, updates: list[dict[str, Any]], message: str
) -> None:
    def script(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        good = step("ok", "START")
        with pytest.raises(InvalidParameter, match=message):
            hh.checkpoint(env, [good, *updates])
        # Nothing of the refused batch was applied, and the token is still valid.
        res = hh.checkpoint(env, [])
        assert res.CheckpointToken is not None
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts.append(script)
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    assert h.history(ex.arn) == ["ExecutionStarted", "InvocationCompleted", "ExecutionSucceeded"]


def test_wait_fires_and_reinvokes(h: Harness) -> None:
    def first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        hh.checkpoint(
            env, [{"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 5}}]
        )
        return {"Status": "PENDING"}

    def second(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        ops = {o["Id"]: o for o in env["InitialExecutionState"]["Operations"]}
        assert ops["w"]["Status"] == "SUCCEEDED"
        return {"Status": "SUCCEEDED", "Result": "2"}

    h.runtime.scripts += [first, second]
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    assert h.store.get(ex.arn).status.value == "RUNNING"
    h.clock.advance(4_000)
    h.pump()
    assert h.store.get(ex.arn).status.value == "RUNNING"
    h.clock.advance(1_000)
    h.pump()
    assert h.history(ex.arn) == [
        "ExecutionStarted",
        "WaitStarted",
        "InvocationCompleted",
        "WaitSucceeded",
        "InvocationCompleted",
        "ExecutionSucceeded",
    ]
    waited = h.store.events(ex.arn, after_id=3, limit=1)[0]
    assert waited.model_extra and waited.model_extra["WaitSucceededDetails"] == {"Duration": 5}


def test_callback_success_timeout_and_late_answer(h: Harness) -> None:
    ids: dict[str, str] = {}

    def first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        res = hh.checkpoint(
            env,
            [
                {
                    "Id": "a",
                    "Type": "CALLBACK",
                    "Action": "START",
                    "CallbackOptions": {"TimeoutSeconds": 10},
                },
                {
                    "Id": "b",
                    "Type": "CALLBACK",
                    "Action": "START",
                    "CallbackOptions": {"HeartbeatTimeoutSeconds": 3},
                },
            ],
        )
        for op in res.Operations:
            ids[op.Id] = op.CallbackDetails.CallbackId
        return {"Status": "PENDING"}

    def pending(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        return {"Status": "PENDING"}

    h.runtime.scripts += [first, pending, pending, pending]
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    h.engine.complete_callback(h.fn.tenant, ids["a"], result='"yes"')
    with pytest.raises(CallbackTimedOut):
        h.engine.complete_callback(h.fn.tenant, ids["a"], result='"again"')
    h.pump()
    h.clock.advance(2_000)
    h.engine.heartbeat_callback(h.fn.tenant, ids["b"])
    h.clock.advance(2_000)
    h.pump()  # heartbeat moved the deadline: not timed out yet
    assert "CallbackTimedOut" not in h.history(ex.arn)
    h.clock.advance(1_500)
    h.pump()
    events = h.store.events(ex.arn, after_id=0, limit=100)
    timed_out = [e for e in events if e.EventType == "CallbackTimedOut"]
    assert len(timed_out) == 1 and timed_out[0].model_extra
    assert (
        timed_out[0].model_extra["CallbackTimedOutDetails"]["Error"]["Payload"]["ErrorType"]
        == "Callback.Heartbeat"
    )
    with pytest.raises(Exception, match="not found"):
        h.engine.complete_callback("999999999999", ids["b"], result="1")


def test_step_retry_goes_pending_then_ready(h: Harness) -> None:
    def first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        err = {"ErrorType": "Boom", "ErrorMessage": "no"}
        res = hh.checkpoint(
            env,
            [
                step("s", "START"),
                step("s", "RETRY", Error=err, StepOptions={"NextAttemptDelaySeconds": 2}),
            ],
        )
        assert res.Operations[0].Status.value == "PENDING"
        return {"Status": "PENDING"}

    def second(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        ops = {o["Id"]: o for o in env["InitialExecutionState"]["Operations"]}
        assert ops["s"]["Status"] == "READY" and ops["s"]["StepDetails"]["Attempt"] == 1
        hh.checkpoint(env, [step("s", "START"), step("s", "SUCCEED", Payload="1")])
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts += [first, second]
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    h.clock.advance(2_000)
    h.pump()
    events = h.store.events(ex.arn, after_id=0, limit=100)
    details = [e.model_extra for e in events if e.EventType in ("StepFailed", "StepSucceeded")]
    assert details[0]["StepFailedDetails"]["RetryDetails"] == {
        "CurrentAttempt": 1,
        "NextAttemptDelaySeconds": 2,
    }
    assert details[1]["StepSucceededDetails"]["RetryDetails"] == {"CurrentAttempt": 2}


def test_invocation_errors_are_retried_then_fail(h: Harness) -> None:
    def crash(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        raise RuntimeError("exploded")

    h.runtime.scripts += [crash, crash, crash]
    ex, _ = h.engine.start(h.fn, None, None)
    for _ in range(3):
        h.pump()
        h.clock.advance(10_000)
    final = h.store.get(ex.arn)
    assert final.status.value == "FAILED" and final.error and final.error.ErrorType == "Crash"
    assert h.history(ex.arn).count("InvocationCompleted") == 3


def test_stop_fences_running_invocation_and_refuses_twice(h: Harness) -> None:
    def script(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        hh.engine.stop(
            env["DurableExecutionArn"], ErrorObject(ErrorType="Stop", ErrorMessage="by test")
        )
        res = hh.checkpoint(env, [step("s", "START")])
        assert res.CheckpointToken is None
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts.append(script)
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    final = h.store.get(ex.arn)
    assert final.status.value == "STOPPED"
    assert h.history(ex.arn) == ["ExecutionStarted", "ExecutionStopped"]
    with pytest.raises(Exception, match="already STOPPED"):
        h.engine.stop(ex.arn, None)


def test_envelope_pages_and_state_paging(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.engine.config = EngineConfig(envelope_max_operations=2)
    seen: dict[str, Any] = {}

    def first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        hh.checkpoint(env, [step(f"s{i}", "SUCCEED", Payload=str(i)) for i in range(5)])
        return {"Status": "PENDING"}

    def second(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        state = env["InitialExecutionState"]
        ids = [o["Id"] for o in state["Operations"]]
        marker = state["NextMarker"]
        assert len(ids) == 2 and marker
        while marker:
            ops, marker = hh.engine.get_state(
                env["DurableExecutionArn"], env["CheckpointToken"], marker, 2
            )
            ids += [o.Id for o in ops]
        seen["ids"] = ids
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts += [first, second]
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    h.engine.fire(Timer(ex.arn, TimerKind.INVOKE, "", h.clock.now_ms()))
    assert seen["ids"] == [ex.exec_id, "s0", "s1", "s2", "s3", "s4"]


def test_client_token_makes_checkpoint_idempotent(h: Harness) -> None:
    def script(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        req = CheckpointRequest.model_validate(
            {
                "CheckpointToken": env["CheckpointToken"],
                "Updates": [step("s", "START")],
                "ClientToken": "retry-me",
            }
        )
        first = hh.engine.checkpoint(env["DurableExecutionArn"], req)
        again = hh.engine.checkpoint(env["DurableExecutionArn"], req)  # a lost response, retried
        assert again == first
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts.append(script)
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    assert h.history(ex.arn).count("StepStarted") == 1


def test_execution_timeout_closes_and_fences(h: Harness) -> None:
    def pending(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        hh.checkpoint(
            env,
            [{"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 7200}}],
        )
        return {"Status": "PENDING"}

    h.runtime.scripts.append(pending)
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    h.clock.advance(3600 * 1000)
    h.pump()
    final = h.store.get(ex.arn)
    assert final.status.value == "TIMED_OUT"
    assert h.history(ex.arn)[-1] == "ExecutionTimedOut"
    # The wait's timer went with the execution: nothing fires later.
    h.clock.advance(7200 * 1000)
    h.pump()
    assert h.history(ex.arn)[-1] == "ExecutionTimedOut"


def test_large_result_checkpointed_on_execution_operation(h: Harness) -> None:
    def script(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        exec_id = env["InitialExecutionState"]["Operations"][0]["Id"]
        res = hh.checkpoint(
            env, [{"Id": exec_id, "Type": "EXECUTION", "Action": "SUCCEED", "Payload": '"big"'}]
        )
        assert res.CheckpointToken is None  # the execution is completing: token revoked
        return {"Status": "SUCCEEDED", "Result": ""}

    h.runtime.scripts.append(script)
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    final = h.store.get(ex.arn)
    assert final.status.value == "SUCCEEDED" and final.result == '"big"'
    assert h.history(ex.arn)[-2:] == ["InvocationCompleted", "ExecutionSucceeded"]


def test_chained_invoke_of_a_durable_function(h: Harness) -> None:
    h.functions.put_latest(h.fn.model_copy(update={"function_name": "child"}), create=True)
    parent_arn: dict[str, str] = {}

    def parent_first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        parent_arn["arn"] = env["DurableExecutionArn"]
        hh.checkpoint(
            env,
            [
                {
                    "Id": "inv",
                    "Type": "CHAINED_INVOKE",
                    "Action": "START",
                    "Payload": '{"x": 1}',
                    "ChainedInvokeOptions": {"FunctionName": "child"},
                }
            ],
        )
        return {"Status": "PENDING"}

    def child(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        ops = env["InitialExecutionState"]["Operations"]
        assert ops[0]["ExecutionDetails"]["InputPayload"] == '{"x": 1}'
        return {"Status": "SUCCEEDED", "Result": '"from child"'}

    def parent_second(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        ops = {o["Id"]: o for o in env["InitialExecutionState"]["Operations"]}
        assert ops["inv"]["Status"] == "SUCCEEDED"
        assert ops["inv"]["ChainedInvokeDetails"]["Result"] == '"from child"'
        return {"Status": "SUCCEEDED", "Result": ops["inv"]["ChainedInvokeDetails"]["Result"]}

    h.runtime.scripts += [parent_first, child, parent_second]
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    assert h.store.get(ex.arn).status.value == "SUCCEEDED"
    events = h.store.events(ex.arn, after_id=0, limit=100)
    assert [e.EventType for e in events] == [
        "ExecutionStarted",
        "ChainedInvokeStarted",
        "InvocationCompleted",
        "ChainedInvokeSucceeded",
        "InvocationCompleted",
        "ExecutionSucceeded",
    ]
    started = events[1].model_extra["ChainedInvokeStartedDetails"]  # type: ignore[index]
    child_ex = h.store.get(started["DurableExecutionArn"])
    assert child_ex.status.value == "SUCCEEDED" and child_ex.parent_arn == ex.arn
    assert started["ExecutedVersion"] == "$LATEST"
    assert started["Input"] == {"Payload": '{"x": 1}', "Truncated": False}


def test_chained_invoke_of_missing_function_fails_the_operation(h: Harness) -> None:
    def parent_first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        res = hh.checkpoint(
            env,
            [
                {
                    "Id": "inv",
                    "Type": "CHAINED_INVOKE",
                    "Action": "START",
                    "ChainedInvokeOptions": {"FunctionName": "nope"},
                }
            ],
        )
        assert res.Operations[0].Status.value == "FAILED"
        return {"Status": "FAILED", "Error": {"ErrorType": "X"}}

    h.runtime.scripts.append(parent_first)
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    assert h.history(ex.arn)[1:3] == ["ChainedInvokeStarted", "ChainedInvokeFailed"]


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (step("s", "SUCCEED", Name="other"), "name"),
        (step("s", "SUCCEED", SubType="Other"), "subtype"),
        (step("s", "SUCCEED", ParentId="ctx"), "parent"),
        ({"Id": "s", "Type": "WAIT", "Action": "CANCEL"}, "type"),
    ],
)
def test_existing_operation_keeps_its_identity(
    h: Harness, second: dict[str, Any], message: str
) -> None:
    def script(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        res = hh.checkpoint(
            env,
            [
                {"Id": "ctx", "Type": "CONTEXT", "Action": "START"},
                step("s", "START", Name="mine"),
            ],
        )
        with pytest.raises(InvalidParameter, match=message):
            hh.checkpoint(env, [second], token=res.CheckpointToken)
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts.append(script)
    h.engine.start(h.fn, None, None)
    h.pump()


def test_retention_sweeps_closed_executions_after_their_period(h: Harness) -> None:
    def done(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts.append(done)
    ex, _ = h.engine.start(h.fn, None, None)
    h.pump()
    assert h.store.get(ex.arn).retention_days == 14  # the default
    h.clock.advance(14 * 86_400_000 - 1)
    h.pump()
    assert h.store.get(ex.arn).status.value == "SUCCEEDED"
    h.clock.advance(1)
    h.pump()
    with pytest.raises(Exception, match="not found"):
        h.store.get(ex.arn)
    assert h.store.events(ex.arn, after_id=0, limit=10) == []


@pytest.mark.parametrize(
    ("how", "event_type"),
    [("stop", "ChainedInvokeStopped"), ("timeout", "ChainedInvokeTimedOut")],
)
def test_child_stop_or_timeout_reaches_the_parent(h: Harness, how: str, event_type: str) -> None:
    child_cfg = DurableConfig(ExecutionTimeout=60)
    child_fn = h.fn.model_copy(update={"function_name": "child", "durable_config": child_cfg})
    h.functions.put_latest(child_fn, create=True)

    def parent_first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        invoke = {"FunctionName": "child"}
        hh.checkpoint(
            env,
            [
                {
                    "Id": "inv",
                    "Type": "CHAINED_INVOKE",
                    "Action": "START",
                    "ChainedInvokeOptions": invoke,
                }
            ],
        )
        return {"Status": "PENDING"}

    def child_waits(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        return {"Status": "PENDING"}

    def parent_second(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        ops = {o["Id"]: o for o in env["InitialExecutionState"]["Operations"]}
        status = ops["inv"]["Status"]
        return {"Status": "FAILED", "Error": {"ErrorType": status}}

    h.runtime.scripts += [parent_first, child_waits, parent_second]
    parent, _ = h.engine.start(h.fn, None, None)
    h.pump()
    started = h.store.find_event(parent.arn, "inv", "ChainedInvokeStarted")
    assert started is not None and started.model_extra
    child_arn = started.model_extra["ChainedInvokeStartedDetails"]["DurableExecutionArn"]
    if how == "stop":
        h.engine.stop(child_arn, None)
    else:
        h.clock.advance(60_000)
    h.pump()
    assert h.history(parent.arn)[-3:] == [event_type, "InvocationCompleted", "ExecutionFailed"]
    final = h.store.get(parent.arn)
    expected = "STOPPED" if how == "stop" else "TIMED_OUT"
    assert final.error is not None and final.error.ErrorType == expected


def test_every_timer_kind_has_a_handler(h: Harness) -> None:
    assert set(h.engine.timer_handlers) == set(TimerKind)


class _UnreachableQueue:
    def dispatch(self, timers: Sequence[Timer], now_ms: int) -> list[Timer]:
        raise Unavailable("queue unreachable")


def test_a_failed_dispatch_leaves_the_change_made_and_its_timers_rows(h: Harness) -> None:
    h.engine.dispatcher = _UnreachableQueue()
    ex, created = h.engine.start(h.fn, "n", None)
    assert created and h.store.get(ex.arn).status.value == "RUNNING"
    due = h.store.due_timers(h.clock.now_ms(), 10)
    assert [(t.arn, t.kind) for t in due] == [(ex.arn, TimerKind.INVOKE)]
