"""kill -9 the server mid-step, mid-wait and mid-callback; restart on the same data dir.

Every execution must complete with a correct history: no step result lost, no event
duplicated, event ids dense.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_notifications_wire import Receiver, read_all

from support.server import ServerProcess, client, deploy, v1

WORKFLOW = """
import time
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration


@durable_step
def slow(step_ctx, seconds):
    time.sleep(seconds)
    return {"slept": seconds}


@durable_step
def quick(step_ctx, tag):
    return tag


@durable_execution
def handler(event, context: DurableContext):
    before = context.step(quick("before"), name="before")
    mode = event["mode"]
    if mode == "step":
        middle = context.step(slow(3), name="slow")
    elif mode == "wait":
        context.wait(Duration.from_seconds(4), name="nap")
        middle = "waited"
    else:
        middle = context.wait_for_callback(lambda cid, ctx: None, name="approval")
    after = context.step(quick("after"), name="after")
    return {"before": before, "middle": middle, "after": after}
"""


def _history(lam: Any, arn: str) -> list[dict[str, Any]]:
    return lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=1000)["Events"]


def _wait_for(lam: Any, arn: str, event_type: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in _history(lam, arn):
            if e["EventType"] == event_type:
                return e
        time.sleep(0.05)
    raise AssertionError(f"{event_type} never appeared in {arn}")


@pytest.mark.slow
def test_executions_survive_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data)
    first.start()
    lam = client(first)
    deploy(lam, "durable", {"handler.py": WORKFLOW})
    receiver = Receiver()  # fails each event's first attempt: retries span the kill
    status, _ = v1(first, "POST", "/v1/webhooks", {"url": receiver.url, "statuses": ["SUCCEEDED"]})
    assert status == 201
    arns = {}
    for mode in ("step", "wait", "callback"):
        resp = lam.invoke(
            FunctionName="durable", InvocationType="Event", Payload=json.dumps({"mode": mode})
        )
        arns[mode] = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    # Mid-step: the slow step has started but not finished; mid-wait: the wait is
    # recorded; mid-callback: the callback exists and nobody has answered.
    _wait_for(lam, arns["step"], "StepStarted")
    _wait_for(lam, arns["wait"], "WaitStarted")
    callback = _wait_for(lam, arns["callback"], "CallbackStarted")
    time.sleep(0.3)
    first.kill()

    second = ServerProcess(data)
    second.start()
    lam = client(second)
    try:
        cid = callback["CallbackStartedDetails"]["CallbackId"]
        lam.send_durable_execution_callback_success(CallbackId=cid, Result=b"ok")
        deadline = time.monotonic() + 60
        for mode, arn in arns.items():
            while lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING":
                assert time.monotonic() < deadline, f"{mode} execution never completed"
                time.sleep(0.1)
            ex = lam.get_durable_execution(DurableExecutionArn=arn)
            assert ex["Status"] == "SUCCEEDED", (mode, ex)
            result = json.loads(ex["Result"])
            assert result["before"] == "before" and result["after"] == "after"
            events = _history(lam, arn)
            assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
            succeeded = Counter(e["Id"] for e in events if e["EventType"] == "StepSucceeded")
            assert all(n == 1 for n in succeeded.values()), (mode, succeeded)
            # wait_for_callback runs its submitter as a step too.
            assert len(succeeded) == (2 if mode == "wait" else 3)
            types = [e["EventType"] for e in events]
            assert types.count("ExecutionSucceeded") == 1 and types[-1] == "ExecutionSucceeded"
        assert json.loads(lam.get_durable_execution(DurableExecutionArn=arns["step"])["Result"])[
            "middle"
        ] == {"slept": 3}
        # Each status change was written with its commit, once, kill -9 or not; the
        # outbox reached the webhook after the restart.
        events, _ = read_all(second)
        for arn in arns.values():
            statuses = [e["detail"]["status"] for e in events
                        if e["detail"]["durableExecutionArn"] == arn]  # fmt: skip
            assert statuses == ["RUNNING", "SUCCEEDED"], (arn, statuses)
        delivered: set[str] = set()
        while delivered != set(arns.values()):
            assert time.monotonic() < deadline + 60, "webhook deliveries never arrived"
            time.sleep(0.2)
            sent = Counter(
                json.loads(body)["detail"]["durableExecutionArn"] for _, body in receiver.requests
            )
            # The receiver answers an event's first attempt 500 and the next one 204.
            delivered = {arn for arn, attempts in sent.items() if attempts >= 2}
        # The invocation that died with the first server is recorded as such.
        step_events = _history(lam, arns["step"])
        crashed = [
            e
            for e in step_events
            if e["EventType"] == "InvocationCompleted"
            and e["InvocationCompletedDetails"].get("Error")
        ]
        assert (
            crashed
            and crashed[0]["InvocationCompletedDetails"]["Error"]["Payload"]["ErrorType"]
            == "Runtime.ExitError"
        )
    finally:
        second.stop()
        receiver.close()
