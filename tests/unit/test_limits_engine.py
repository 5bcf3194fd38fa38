"""Limits per execution at the engine, on both stores (SQLite, DynamoDB under moto).

The scripted 'handler' checkpoints as the SDK does: a step recorded as SUCCEEDED in the
envelope is replayed (not checkpointed again); a checkpoint answered without a token
ends the invocation (PENDING), as the SDK stops there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from support.engine_harness import REGION, Harness, harness_on, step
from treadle.adapters.aws import DynamoExecutionStore
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.domain.engine.limits import LIMIT_EXCEEDED, batch_cost, exceeded
from treadle.domain.errors import PayloadTooLarge
from treadle.domain.models import Execution, ExecutionLimits, OperationUpdate
from treadle.domain.ports import ExecutionStore

NAME = "limits-test"
INPUT = '{"order": 42}'


@pytest.fixture(params=["sqlite", "dynamodb"])
def h(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    with harness_on(request.param, tmp_path, monkeypatch, NAME) as harness:
        yield harness


def reopened(h: Harness, tmp_path: Path) -> ExecutionStore:
    """A new store over the same data, as a restarted process would open it."""
    if isinstance(h.store, SqliteExecutionStore):
        return SqliteExecutionStore(Database(tmp_path / "t.db"))
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    return DynamoExecutionStore(dynamodb, NAME, s3_client=s3, bucket=NAME)


class Steps:
    """Steps s1..sN, each START then SUCCEED with `payload`; with `wait_after`, a WAIT
    after that many steps (the invocation then ends PENDING, the next one replays)."""

    def __init__(self, n: int, payload: str = '"ok"', wait_after: int = 0) -> None:
        self.n, self.payload, self.wait_after = n, payload, wait_after
        self.checkpointed: list[str] = []

    def __call__(self, env: dict[str, Any], h: Harness) -> dict[str, Any]:
        recorded = {op["Id"]: op for op in env["InitialExecutionState"]["Operations"]}
        token = env["CheckpointToken"]
        for i in range(1, self.n + 1):
            op_id = f"s{i}"
            if recorded.get(op_id, {}).get("Status") != "SUCCEEDED":
                updates = [
                    step(op_id, "START", Name=op_id),
                    step(op_id, "SUCCEED", Name=op_id, Payload=self.payload),
                ]
                res = h.checkpoint(env, updates, token)
                if res.CheckpointToken is None:
                    return {"Status": "PENDING"}
                token = res.CheckpointToken
                self.checkpointed.append(op_id)
            if i == self.wait_after and "w" not in recorded:
                wait = {"Id": "w", "Type": "WAIT", "Action": "START"}
                h.checkpoint(env, [{**wait, "WaitOptions": {"WaitSeconds": 5}}], token)
                return {"Status": "PENDING"}
        return {"Status": "SUCCEEDED", "Result": json.dumps(self.n)}


def run(h: Harness, script: Any, limits: ExecutionLimits | None = None) -> Execution:
    h.runtime.scripts.append(script)
    ex, _ = h.engine.start(h.fn, None, INPUT, limits=limits)
    h.pump()
    return h.store.get(ex.arn)


def test_a_ten_step_workflow_over_5_operations_fails_with_the_limit_error(h: Harness) -> None:
    script = Steps(10)
    done = run(h, script, ExecutionLimits(max_operations=5))
    assert done.status.value == "FAILED"
    assert done.error is not None and done.error.ErrorType == LIMIT_EXCEEDED
    # The EXECUTION operation and s1..s4 are five; s5 would be the sixth.
    assert done.error.ErrorMessage == "operations per execution: 6 > 5"
    assert script.checkpointed == ["s1", "s2", "s3", "s4"]
    assert done.operation_count == 5
    # The refused batch left nothing: no s5, and the invocation ended before the close.
    snap = h.store.load(done.arn)
    assert "s5" not in snap.operations
    events = h.history(done.arn)
    assert events[-2:] == ["InvocationCompleted", "ExecutionFailed"]
    assert events.count("StepStarted") == 4
    assert done.arn in h.closed


def test_with_the_default_limits_the_same_workflow_succeeds_and_counts_exactly(
    h: Harness,
) -> None:
    done = run(h, Steps(10, payload='"abc"'))
    assert done.status.value == "SUCCEEDED"
    assert done.limits == ExecutionLimits()  # AWS's: 3,000 operations, 100 MB, 256 KB
    assert done.limits.max_operations == 3000
    assert done.operation_count == 11  # the EXECUTION operation and ten steps
    # Input, ten step results, and the execution's result.
    assert done.history_bytes == len(INPUT) + 10 * len('"abc"') + len("10")


def test_persisted_payloads_over_the_history_limit_fail_the_execution(h: Harness) -> None:
    payload = json.dumps("x" * 998)  # 1,000 bytes
    limits = ExecutionLimits(max_history_bytes=len(INPUT) + 3500)
    done = run(h, Steps(10, payload=payload), limits)
    assert done.status.value == "FAILED" and done.error is not None
    assert done.error.ErrorType == LIMIT_EXCEEDED
    used = len(INPUT) + 3000
    assert done.error.ErrorMessage == (
        f"history bytes per execution: {used + 1000} > {limits.max_history_bytes}"
    )
    # What s1..s3 persisted (s4 was refused), and the execution's error.
    error = len(done.error.model_dump_json(exclude_none=True))
    assert done.history_bytes == used + error


def test_a_payload_over_the_pinned_limit_is_refused_and_nothing_is_applied(h: Harness) -> None:
    seen: list[Exception] = []

    def oversized(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        big = json.dumps("y" * 200)
        try:
            hh.checkpoint(env, [step("s1", "START"), step("s1", "SUCCEED", Payload=big)])
        except PayloadTooLarge as exc:
            seen.append(exc)
        ex = hh.store.get(env["DurableExecutionArn"])
        assert ex.operation_count == 1 and "s1" not in hh.store.load(ex.arn).operations
        # The token was not consumed: the handler may go on with a smaller payload.
        res = hh.checkpoint(env, [step("s1", "START"), step("s1", "SUCCEED", Payload='"s"')])
        assert res.CheckpointToken is not None
        return {"Status": "SUCCEEDED", "Result": '"s"'}

    done = run(h, oversized, ExecutionLimits(max_payload_bytes=100))
    assert len(seen) == 1 and "exceeds 100 bytes (202 bytes)" in seen[0].message
    assert done.status.value == "SUCCEEDED" and done.operation_count == 2


def test_step_retries_and_invocation_retries_count_as_operations_as_aws_meters_them(
    h: Harness,
) -> None:
    error = {"ErrorType": "Boom", "ErrorMessage": "no"}

    def attempt_1(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        retry = step("s1", "RETRY", Error=error, StepOptions={"NextAttemptDelaySeconds": 1})
        hh.checkpoint(env, [step("s1", "START"), retry])
        return {"Status": "PENDING"}

    def crash(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        raise RuntimeError("lost")

    def attempt_2(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        hh.checkpoint(env, [step("s1", "START"), step("s1", "SUCCEED", Payload='"ok"')])
        return {"Status": "SUCCEEDED", "Result": '"ok"'}

    h.runtime.scripts += [attempt_1, crash, attempt_2]
    ex, _ = h.engine.start(h.fn, None, INPUT)
    h.pump()
    h.clock.advance(1000)
    h.pump()
    h.clock.advance(1000)  # the invocation retry's backoff
    h.pump()
    done = h.store.get(ex.arn)
    assert done.status.value == "SUCCEEDED"
    # EXECUTION, s1, its retry, the invocation-level retry.
    assert done.operation_count == 4
    # The input, the failed attempt's error, the crash's error, s1's result, the result.
    crash = {"ErrorType": "Crash", "ErrorMessage": "lost"}
    errors = sum(len(json.dumps(e, separators=(",", ":"))) for e in (error, crash))
    assert done.history_bytes == len(INPUT) + errors + 2 * len('"ok"')


def test_counters_survive_a_restart_and_a_replay_does_not_count_twice(
    h: Harness, tmp_path: Path
) -> None:
    script = Steps(5, payload='"p"', wait_after=3)
    h.runtime.scripts.append(script)
    ex, _ = h.engine.start(h.fn, None, INPUT, limits=ExecutionLimits(max_operations=7))
    h.pump()
    parked = h.store.get(ex.arn)
    assert parked.status.value == "RUNNING"
    assert (parked.operation_count, parked.history_bytes) == (5, len(INPUT) + 3 * 3)
    # A new process: the counters and the pinned limits come from the store.
    store = reopened(h, tmp_path)
    h.store = h.engine.store = store  # type: ignore[misc]
    assert store.get(ex.arn).operation_count == 5
    assert store.get(ex.arn).limits.max_operations == 7
    h.runtime.scripts.append(script)
    h.clock.advance(5000)
    h.pump()
    done = store.get(ex.arn)
    assert done.status.value == "SUCCEEDED", done.error
    assert script.checkpointed == ["s1", "s2", "s3", "s4", "s5"]  # s1..s3 replayed
    # EXECUTION, five steps, one wait: exactly the limit, nothing counted twice.
    assert done.operation_count == 7
    assert done.history_bytes == len(INPUT) + 5 * 3 + len("5")


def test_a_chained_child_runs_under_its_parents_pinned_limits(h: Harness) -> None:
    def parent(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        invoke = {
            "Id": "c1",
            "Type": "CHAINED_INVOKE",
            "Action": "START",
            "ChainedInvokeOptions": {"FunctionName": "f"},
            "Payload": "{}",
        }
        hh.checkpoint(env, [invoke])
        return {"Status": "PENDING"}

    h.runtime.scripts += [parent, Steps(1), lambda env, hh: {"Status": "SUCCEEDED"}]
    limits = ExecutionLimits(max_operations=9, max_history_bytes=9999, max_payload_bytes=999)
    ex, _ = h.engine.start(h.fn, None, INPUT, limits=limits)
    h.pump()
    child_env = h.runtime.envelopes[1]
    child = h.store.get(child_env["DurableExecutionArn"])
    assert child.limits == limits and child.parent_arn == ex.arn


def test_a_batch_is_priced_as_aws_meters_it_before_anything_is_applied() -> None:
    def update(op_id: str, action: str, op_type: str = "STEP", **extra: Any) -> Any:
        raw = {"Id": op_id, "Type": op_type, "Action": action, **extra}
        return OperationUpdate.model_validate(raw)

    error = {"ErrorType": "E", "ErrorMessage": "m"}
    batch = [
        update("s1", "START"),  # new: one operation
        update("s1", "SUCCEED", Payload='"abc"'),  # the same operation: its payload only
        update("s0", "RETRY", Error=error, StepOptions={"NextAttemptDelaySeconds": 1}),
        update("w1", "START", "WAIT", WaitOptions={"WaitSeconds": 1}),
        update("exec", "SUCCEED", "EXECUTION", Payload="[1]"),  # never a new operation
    ]
    existing = {"exec": object(), "s0": object()}
    # s1 and w1 are new; s0 exists but its retry is one more operation.
    error_bytes = len(json.dumps(error, separators=(",", ":")))
    assert batch_cost(batch, existing) == (3, len('"abc"') + error_bytes + len("[1]"))
    ex = Execution.model_validate(
        {
            "arn": "a", "tenant": "t", "function_name": "f", "version": "1", "name": "n",
            "exec_id": "exec", "status": "RUNNING", "input_payload": None, "input_hash": "h",
            "start_ms": 0, "execution_timeout_s": 1, "retention_days": 1,
            "limits": {"max_operations": 5, "max_history_bytes": 100},
            "operation_count": 2, "history_bytes": 90,
        }
    )  # fmt: skip
    assert exceeded(ex, 3, 10) is None  # exactly at both limits
    over = exceeded(ex, 4, 0)
    assert over is not None and over.ErrorMessage == "operations per execution: 6 > 5"
    over = exceeded(ex, 0, 11)
    assert over is not None and over.ErrorMessage == "history bytes per execution: 101 > 100"
