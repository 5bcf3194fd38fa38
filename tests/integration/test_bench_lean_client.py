"""The benchmarks' lean Invoke client (`benchmarks/lean.py`) makes the request boto3
makes: the server starts the execution it names, takes the callback answer it sends, and
refuses a bad signature alike."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from benchmarks.lean import InvokeError, LeanInvoker

from support.server import REGION, ServerProcess, deploy
from support.workflows import WORKFLOW


def test_a_lean_start_is_an_asynchronous_invoke_the_server_accepts(
    server: ServerProcess, lam: Any
) -> None:
    deploy(lam, "lean", {"handler.py": WORKFLOW})
    key_id, secret = server.credentials()
    invoker = LeanInvoker(server.url, key_id, secret, REGION)
    arns = [invoker.start("lean", json.dumps({"n": n}).encode()) for n in range(3)]
    assert len(set(arns)) == 3 and all("/durable-execution/" in arn for arn in arns)
    for n, arn in enumerate(arns):
        ex = _closed(lam, arn)
        assert ex["Status"] == "SUCCEEDED" and json.loads(ex["Result"]) == {"first": 2 * n}
    waiting = invoker.start("lean", json.dumps({"n": 7, "callback": True}).encode())
    callback = _callback(lam, waiting)
    invoker.succeed_callback(callback, b'"yes"')
    ex = _closed(lam, waiting)
    assert json.loads(ex["Result"]) == {"first": 14, "approval": '"yes"'}  # as boto3 sends it
    forged = LeanInvoker(server.url, key_id, "not-the-secret", REGION)
    with pytest.raises(InvokeError, match="HTTP 403"):
        forged.start("lean", b"{}")
    invoker.close()


def _callback(lam: Any, arn: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for event in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]:
            if event["EventType"] == "CallbackStarted":
                return str(event["CallbackStartedDetails"]["CallbackId"])
        time.sleep(0.05)
    raise AssertionError(f"{arn} never waited for its callback")


def _closed(lam: Any, arn: str) -> Any:
    deadline = time.monotonic() + 30
    while (ex := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still running"
        time.sleep(0.05)
    return ex
