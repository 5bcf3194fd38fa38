"""Redrive at the engine, on both stores (SQLite, DynamoDB under moto).

The 'handler' here replays the way the SDK does: a step whose operation is in the
envelope as SUCCEEDED returns the recorded result and does not run; any other runs
(counted), and checkpoints START then SUCCEED with a fresh nonce, or FAIL.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.engine_harness import Harness, harness_on, step
from treadle.adapters.local.basics import RandomIds
from treadle.domain.engine import Engine, TokenCodec
from treadle.domain.engine.redrive import FromStep
from treadle.domain.errors import Conflict, ExecutionAlreadyStarted, InvalidParameter
from treadle.domain.models import Execution


@pytest.fixture(params=["sqlite", "dynamodb"])
def h(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    with harness_on(request.param, tmp_path, monkeypatch, "redrive-test") as harness:
        yield harness


class Workflow:
    """Ten steps `s1`..`s10`; step `fail_at` fails (0: none). Counts real runs."""

    def __init__(self, fail_at: int, parent: str | None = None) -> None:
        self.fail_at = fail_at
        self.parent = parent
        self.runs: dict[int, int] = {}

    def __call__(self, env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        recorded = {op["Id"]: op for op in env["InitialExecutionState"]["Operations"]}
        token = env["CheckpointToken"]
        nonces = []
        for i in range(1, 11):
            op_id = f"s{i}"
            op = recorded.get(op_id)
            if op is not None and op["Status"] == "SUCCEEDED":
                nonces.append(json.loads(op["StepDetails"]["Result"]))
                continue
            self.runs[i] = self.runs.get(i, 0) + 1
            extra = {"Name": op_id}
            if i == self.fail_at:
                res = hh.checkpoint(
                    env,
                    [
                        step(op_id, "START", **extra),
                        step(op_id, "FAIL", Error={"ErrorType": "Boom"}, **extra),
                    ],
                    token,
                )
                return {"Status": "FAILED", "Error": {"ErrorType": "Boom"}}
            nonce = uuid.uuid4().hex
            res = hh.checkpoint(
                env,
                [
                    step(op_id, "START", **extra),
                    step(op_id, "SUCCEED", Payload=json.dumps(nonce), **extra),
                ],
                token,
            )
            token = res.CheckpointToken
            nonces.append(nonce)
        return {"Status": "SUCCEEDED", "Result": json.dumps(nonces)}


def failed_at_7(h: Harness) -> tuple[Execution, Workflow]:
    first = Workflow(fail_at=7)
    h.runtime.scripts.append(first)
    ex, _ = h.engine.start(h.fn, "src", '{"order": 1}')
    h.pump()
    assert h.store.get(ex.arn).status.value == "FAILED"
    assert first.runs == {i: 1 for i in range(1, 8)}
    return ex, first


def recorded_nonces(h: Harness, arn: str) -> dict[str, str]:
    ops = h.store.load(arn).operations.values()
    return {
        s.op.Id: json.loads(s.op.StepDetails.Result)
        for s in ops
        if s.op.StepDetails and s.op.StepDetails.Result and s.op.Status.value == "SUCCEEDED"
    }


def test_a_redrive_from_the_failed_step_7_of_10_runs_only_steps_7_to_10(h: Harness) -> None:
    src, _ = failed_at_7(h)
    fixed = Workflow(fail_at=0)
    h.runtime.scripts.append(fixed)
    out = h.engine.redrive(src.arn, None, None)
    assert out.created and out.seeded == 6
    assert out.from_operation is not None and out.from_operation.Id == "s7"
    h.pump()
    final = h.store.get(out.execution.arn)
    assert final.status.value == "SUCCEEDED"
    assert fixed.runs == {7: 1, 8: 1, 9: 1, 10: 1}  # steps 1 to 6 did not run again
    before = recorded_nonces(h, src.arn)
    result = json.loads(final.result or "[]")
    assert result[:6] == [before[f"s{i}"] for i in range(1, 7)]  # replayed from the record
    assert len(set(result)) == 10
    assert final.input_payload == '{"order": 1}' and final.version == src.version


def test_the_two_executions_link_both_ways_and_the_history_says_where_it_came_from(
    h: Harness,
) -> None:
    src, _ = failed_at_7(h)
    h.runtime.scripts.append(Workflow(fail_at=0))
    out = h.engine.redrive(src.arn, None, None)
    h.pump()
    assert h.store.get(out.execution.arn).redriven_from == src.arn
    assert h.store.get(src.arn).redriven_to == [out.execution.arn]
    assert h.store.get(src.arn).status.value == "FAILED"  # the source is otherwise unchanged
    events = h.store.events(out.execution.arn, after_id=0, limit=100)
    started = events[0].model_dump()
    assert events[0].EventType == "ExecutionStarted"
    assert started["ExecutionStartedDetails"]["RedrivenFrom"] == {
        "DurableExecutionArn": src.arn,
        "FromOperationId": "s7",
        "FromOperationName": "s7",
        "SeededOperations": 6,
    }
    # The seeded operations have no events of their own: the first step event is s7's.
    step_ids = [e.Id for e in events if e.EventType.startswith("Step")]
    assert step_ids[0] == "s7" and "s1" not in step_ids


def test_a_redrive_from_a_named_step_copies_only_the_steps_before_it(h: Harness) -> None:
    src, _ = failed_at_7(h)
    again = Workflow(fail_at=0)
    h.runtime.scripts.append(again)
    out = h.engine.redrive(src.arn, None, FromStep("s3", 1))
    h.pump()
    assert out.seeded == 2
    assert again.runs == {i: 1 for i in range(3, 11)}
    copied = recorded_nonces(h, out.execution.arn)
    source = recorded_nonces(h, src.arn)
    assert copied["s1"] == source["s1"] and copied["s3"] != source["s3"]


def test_a_second_redrive_links_too_and_a_named_redrive_is_idempotent(h: Harness) -> None:
    src, _ = failed_at_7(h)
    h.runtime.scripts.extend([Workflow(fail_at=7), Workflow(fail_at=0)])
    one = h.engine.redrive(src.arn, None, None, "retry-1")
    h.pump()
    again = h.engine.redrive(src.arn, None, None, "retry-1")
    assert not again.created and again.execution.arn == one.execution.arn
    two = h.engine.redrive(src.arn, None, None, "retry-2")
    h.pump()
    assert h.store.get(src.arn).redriven_to == [one.execution.arn, two.execution.arn]
    assert h.store.get(two.execution.arn).status.value == "SUCCEEDED"
    # A redrive of the first redrive: chains link the same way.
    h.runtime.scripts.append(Workflow(fail_at=0))
    three = h.engine.redrive(one.execution.arn, None, None)
    h.pump()
    assert h.store.get(one.execution.arn).redriven_to == [three.execution.arn]
    with pytest.raises(ExecutionAlreadyStarted):
        h.engine.redrive(one.execution.arn, None, None, "retry-2")  # not its redrive


def test_what_cannot_be_redriven_is_refused_and_writes_nothing(h: Harness) -> None:
    src, _ = failed_at_7(h)
    with pytest.raises(InvalidParameter, match="named 'nope'"):
        h.engine.redrive(src.arn, None, FromStep("nope", 1))
    with pytest.raises(InvalidParameter, match="not 2"):
        h.engine.redrive(src.arn, None, FromStep("s1", 2))
    h.runtime.scripts.append(lambda env, hh: {"Status": "SUCCEEDED", "Result": "1"})
    ok, _ = h.engine.start(h.fn, "ok", "{}")
    h.pump()
    with pytest.raises(InvalidParameter, match="no failed step"):
        h.engine.redrive(ok.arn, None, None)
    running, _ = h.engine.start(h.fn, "running", "{}")
    with pytest.raises(Conflict, match="RUNNING"):
        h.engine.redrive(running.arn, None, None)
    assert h.store.get(src.arn).redriven_to == []
    names = {e.name for e in h.store.list_executions(h.fn.tenant, "f", _all())[0]}
    assert names == {"src", "ok", "running"}


def _all() -> Any:
    from treadle.domain.ports import ExecutionQuery

    return ExecutionQuery()


def test_child_contexts_completed_are_copied_whole_an_open_one_enclosing_the_step_is_not(
    h: Harness,
) -> None:
    def ctx(op_id: str, action: str, **extra: Any) -> dict[str, Any]:
        return {"Id": op_id, "Type": "CONTEXT", "SubType": "RunInChildContext",
                "Action": action, **extra}  # fmt: skip

    def first(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        hh.checkpoint(
            env,
            [
                ctx("c1", "START", Name="c1"),
                step("c1a", "START", ParentId="c1", Name="a"),
                step("c1a", "SUCCEED", ParentId="c1", Name="a", Payload='"1"'),
                ctx("c1", "SUCCEED", Name="c1", Payload='"c1"'),
                ctx("c2", "START", Name="c2"),
                step("c2a", "START", ParentId="c2", Name="a"),
                step("c2a", "SUCCEED", ParentId="c2", Name="a", Payload='"2"'),
                step("c2b", "START", ParentId="c2", Name="b"),
                step("c2b", "FAIL", ParentId="c2", Name="b", Error={"ErrorType": "X"}),
                ctx("c2", "FAIL", Name="c2", Error={"ErrorType": "X"}),
            ],
        )
        return {"Status": "FAILED", "Error": {"ErrorType": "X"}}

    seen: list[set[str]] = []

    def second(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        seen.append({op["Id"] for op in env["InitialExecutionState"]["Operations"]})
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts.extend([first, second])
    src, _ = h.engine.start(h.fn, "ctx", "{}")
    h.pump()
    out = h.engine.redrive(src.arn, None, None)
    h.pump()
    assert out.from_operation is not None and out.from_operation.Id == "c2b"
    assert seen[0] - {out.execution.exec_id} == {"c1", "c1a", "c2a"}
    # From the failed context itself: it and everything in it run again.
    h.runtime.scripts.append(second)
    again = h.engine.redrive(src.arn, None, FromStep("c2", 1))
    h.pump()
    # Less the execution's own operation: its random id may start with "c" too.
    ids = seen[1] - {again.execution.exec_id}
    assert {i for i in ids if i.startswith("c")} == {"c1", "c1a"}


def test_concurrent_redrives_of_one_source_are_all_linked(h: Harness) -> None:
    src, _ = failed_at_7(h)
    # A second engine over the same store: another process, with locks of its own, so
    # only the source's version orders the two (the loser reads it again and retries).
    other = Engine(
        store=h.store, functions=h.functions, runtime=h.runtime, clock=h.clock,
        ids=RandomIds(), tokens=TokenCodec(b"k" * 32), dispatcher=h, listener=h,
    )  # fmt: skip
    arns: list[str] = []

    def one(i: int) -> None:
        engine = other if i % 2 else h.engine
        arns.append(engine.redrive(src.arn, None, None, f"r{i}").execution.arn)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(arns) == 6
    assert sorted(h.store.get(src.arn).redriven_to) == sorted(arns)
    assert all(h.store.get(arn).redriven_from == src.arn for arn in arns)
