"""kill -9 while a batch of starts waits behind a full invocation lane, its leases taken
in the starts' commits and its invocations queued in memory (`engine/handover.py`).

After the restart every execution completes, each step once, and an invocation that
never left the backlog is not recorded as a crash of the handler: only those the lane
was running can be (a crash counts towards the execution's three attempts).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, v1
from treadle.settings import ENV_INVOKE_CONCURRENCY

WORKFLOW = """
import time
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def slow(step_ctx, n):
    time.sleep(0.4)
    return n


@durable_execution
def handler(event, context: DurableContext):
    return {"n": context.step(slow(event["n"]), name="slow")}
"""
COUNT = 12
LANE = 1  # invocations at once; the lane takes twice that before it queues


def _crashes(lam: Any, arn: str) -> int:
    events = lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=1000)["Events"]
    return sum(
        1
        for e in events
        if e["EventType"] == "InvocationCompleted" and e["InvocationCompletedDetails"].get("Error")
    )


@pytest.mark.slow
def test_a_backlog_killed_mid_flood_completes_without_crashes_counted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {ENV_INVOKE_CONCURRENCY: str(LANE)}
    first = ServerProcess(data, env=env)
    first.start()
    lam = client(first)
    deploy(lam, "flood", {"handler.py": WORKFLOW})
    body = {"executions": [{"name": f"e{n}", "input": {"n": n}} for n in range(COUNT)]}
    status, out = v1(first, "POST", "/v1/functions/flood/executions:batch", body)
    assert status == 200, out
    arns = [r["executionArn"] for r in out["results"]]
    assert len(arns) == COUNT
    time.sleep(1.0)  # a few have run or are running; most wait in the backlog
    first.kill()

    second = ServerProcess(data, env=env)
    second.start()
    lam = client(second)
    try:
        deadline = time.monotonic() + 90
        for n, arn in enumerate(arns):
            while lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING":
                assert time.monotonic() < deadline, f"execution {n} never completed"
                time.sleep(0.1)
            ex = lam.get_durable_execution(DurableExecutionArn=arn)
            assert ex["Status"] == "SUCCEEDED", (n, ex)
            assert json.loads(ex["Result"]) == {"n": n}
            events = lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=1000)
            steps = Counter(e["Id"] for e in events["Events"] if e["EventType"] == "StepSucceeded")
            assert list(steps.values()) == [1], (n, steps)
        crashed = [n for n, arn in enumerate(arns) if _crashes(lam, arn)]
        # Only the lane's own (its threads and the two places waiting for them) can have
        # been running under a lease the handler is charged for; the rest were queued.
        assert len(crashed) <= 2 * LANE, crashed
    finally:
        second.stop()
