"""Batch starts on the wire: `POST /v1/functions/<name>/executions:batch`, read back
with boto3. 10,000 executions through 100 batches (the time is printed, not asserted)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from support.server import ServerProcess, client, deploy, v1

QUICK = "def handler(event, context):\n    return event\n"
DURABLE = """
from aws_durable_execution_sdk_python import durable_execution


@durable_execution
def handler(event, context):
    return event
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # An INVOKE concurrency of 1: the 10,000 started executions run slowly behind.
    data: Path = tmp_path_factory.mktemp("batch") / "data"
    server = ServerProcess(data, env={"TREADLE_INVOKE_CONCURRENCY": "1"})
    server.start()
    try:
        lam = client(server)
        deploy(lam, "batched", {"handler.py": DURABLE})
        deploy(lam, "plain", {"handler.py": QUICK}, durable=False)
        admin = server.credentials("treadle-admin")
        account = lam.get_function(FunctionName="batched")["Configuration"]["FunctionArn"]
        quotas = {"maxRunningExecutions": 20_000, "maxStartsPerSecond": 100_000}
        status, body = v1(
            server, "PATCH", f"/v1/tenants/{account.split(':')[4]}", {"quotas": quotas},
            credentials=admin,
        )  # fmt: skip
        assert status == 200, body
        yield server
    finally:
        server.stop()


def batch(server: ServerProcess, body: Any, fn: str = "batched") -> tuple[int, Any]:
    return v1(server, "POST", f"/v1/functions/{fn}/executions:batch", body)


def test_each_entry_gets_its_arn_or_its_error_and_names_are_idempotent(
    srv: ServerProcess,
) -> None:
    lam = client(srv)
    entries = [{"name": "one", "input": {"n": 1}}, {"input": [2]}, {"name": "one", "input": 9}]
    status, body = batch(srv, {"executions": entries})
    assert status == 200, body
    first, second, third = body["results"]
    assert first["created"] is True and second["created"] is True
    assert third["error"]["code"] == "DurableExecutionAlreadyStartedException"
    assert third["error"]["status"] == 409
    status, again = batch(srv, {"executions": entries[:1]})
    # The same execution; its status is what it is now (it may have run meanwhile).
    assert again["results"][0] == {**first, "created": False, "status": ANY}
    assert first["status"] == "RUNNING"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ex = lam.get_durable_execution(DurableExecutionArn=first["executionArn"])
        if ex["Status"] == "SUCCEEDED":
            break
        time.sleep(0.1)
    assert json.loads(ex["Result"]) == {"n": 1}


def test_bad_batches_are_refused_whole_with_a_precise_message(srv: ServerProcess) -> None:
    status, body = batch(srv, {"executions": [{"input": 1}] * 101})
    assert status == 400 and "executions" in body["error"]["message"]
    status, body = batch(srv, {"executions": []})
    assert status == 400
    status, body = batch(srv, {"executions": [{"name": "bad name"}]})
    assert status == 400 and "name" in body["error"]["message"]
    status, body = batch(srv, {"executions": [{"input": 1}]}, fn="plain")
    assert status == 400 and "not durable" in body["error"]["message"]
    status, body = batch(srv, {"executions": [{"input": 1}]}, fn="missing")
    assert status == 404


@pytest.mark.slow
def test_ten_thousand_executions_through_a_hundred_batches(srv: ServerProcess) -> None:
    lam = client(srv)
    began = time.perf_counter()
    arns = set()
    for b in range(100):
        entries = [{"name": f"bulk-{b}-{i}", "input": {"b": b, "i": i}} for i in range(100)]
        status, body = batch(srv, {"executions": entries})
        assert status == 200
        arns.update(r["executionArn"] for r in body["results"] if r.get("created"))
    elapsed = time.perf_counter() - began
    print(f"\n10,000 executions started in 100 batches: {elapsed:.2f} s"
          f" ({10_000 / elapsed:.0f} starts/s)")  # fmt: skip
    assert len(arns) == 10_000
    listed = 0
    marker = None
    while True:
        page = lam.list_durable_executions_by_function(
            FunctionName="batched", MaxItems=1000, **({"Marker": marker} if marker else {})
        )
        listed += sum(e["DurableExecutionName"].startswith("bulk-")
                      for e in page["DurableExecutions"])  # fmt: skip
        marker = page.get("NextMarker")
        if not marker:
            break
    assert listed == 10_000
