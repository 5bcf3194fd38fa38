"""kill -9 while buffered events are being consumed; restart on the same data dir.

Each execution takes a stream of three events: the first completes an open wait, the
other two are buffered and taken by the next waits, in re-invocations that are in
flight when the server is killed. After the restart every execution must return its
three events in order: none lost (it would hang), none taken twice (a duplicate), none
taken out of order.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from test_events_wire import history, send

from support.server import ServerProcess, client, deploy
from support.workflows import EVENTED

COUNT = 8


def _wait_started(lam: Any, arns: list[str]) -> None:
    deadline = time.monotonic() + 60
    pending = set(arns)
    while pending and time.monotonic() < deadline:
        for arn in list(pending):
            if any(e["EventType"] == "CallbackStarted" for e in history(lam, arn)):
                pending.discard(arn)
        time.sleep(0.05)
    assert not pending, f"{len(pending)} executions never waited"


@pytest.mark.slow
def test_buffered_events_are_consumed_exactly_once_across_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data)
    first.start()
    lam = client(first)
    deploy(lam, "evented", {"handler.py": EVENTED})
    arns = []
    for i in range(COUNT):
        resp = lam.invoke(
            FunctionName="evented",
            InvocationType="Event",
            Payload=json.dumps({"mode": "stream", "n": 3}),
            DurableExecutionName=f"stream-{i}",
        )
        arns.append(resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])
    _wait_started(lam, arns)
    outcomes = []
    for arn in arns:
        for item in range(3):
            status, body = send(first, arn, "item", {"arn": arn[-8:], "i": item})
            assert status == 200, body
            outcomes.append(body["outcome"])
    assert "buffered" in outcomes  # some were buffered while re-invocations ran
    first.kill()  # re-invocations taking buffered events are in flight

    second = ServerProcess(data)
    second.start()
    try:
        lam = client(second)
        for arn in arns:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                ex = lam.get_durable_execution(DurableExecutionArn=arn)
                if ex["Status"] != "RUNNING":
                    break
                time.sleep(0.1)
            assert ex["Status"] == "SUCCEEDED", ex
            got = json.loads(ex["Result"])
            assert got == [{"arn": arn[-8:], "i": i} for i in range(3)]
            events = history(lam, arn)
            assert [e["EventType"] for e in events].count("CallbackSucceeded") == 3
            assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
            # Closed with nothing left over: a fourth send is a conflict, not buffered.
            status, _ = send(second, arn, "item", "late")
            assert status == 409
    finally:
        second.stop()
