"""A synchronous invoke waits at most `sync_invoke_wait_s`, then answers with a function error.

Behind API Gateway (29 s) the stack sets 25 s; here 1 s, against a durable wait of 3 s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.server import ServerProcess, deploy
from support.workflows import WORKFLOW
from treadle.settings import ENV_SYNC_INVOKE_WAIT

WAIT_S = 1
SLEEP_S = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path_factory.mktemp("sync-wait") / "data", env={ENV_SYNC_INVOKE_WAIT: str(WAIT_S)}
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def wf(lam: Any) -> str:
    deploy(lam, "slow", {"handler.py": WORKFLOW})
    return "slow"


@pytest.fixture(scope="module")
def fast(lam: Any) -> str:
    deploy(lam, "fast", {"handler.py": WORKFLOW})
    return "fast"


def _wait_status(lam: Any, arn: str, want: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        ex = lam.get_durable_execution(DurableExecutionArn=arn)
        if ex["Status"] == want:
            return ex  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{arn} is {ex['Status']}, wanted {want}"
        time.sleep(0.1)


def test_a_sync_invoke_still_running_gets_a_function_error_and_the_execution_goes_on(
    lam: Any, wf: str
) -> None:
    started = time.monotonic()
    resp = lam.invoke(FunctionName=wf, Payload=json.dumps({"n": 21, "wait": SLEEP_S}))
    elapsed = time.monotonic() - started
    # A function error (200), not a 5xx an SDK client would retry into a second execution.
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert WAIT_S <= elapsed < SLEEP_S, elapsed
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    body = json.loads(resp["Payload"].read())
    assert set(body) == {"errorType", "errorMessage"}
    assert body["errorType"] == "Treadle.SyncInvokeTimeout"
    message = body["errorMessage"]
    assert arn in message
    assert f"still running after {WAIT_S} s" in message
    assert "GetDurableExecution" in message and "InvocationType=Event" in message
    # The answer stopped nothing: the execution completes on its own.
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    ex = _wait_status(lam, arn, "SUCCEEDED")
    assert json.loads(ex["Result"]) == {"first": 42}
    # boto3 did not retry the answer into a second execution.
    executions = lam.list_durable_executions_by_function(FunctionName=wf)["DurableExecutions"]
    assert [e["DurableExecutionArn"] for e in executions] == [arn]


def test_a_fast_execution_still_returns_its_result(lam: Any, fast: str) -> None:
    resp = lam.invoke(FunctionName=fast, Payload=json.dumps({"n": 4}))
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert json.loads(resp["Payload"].read()) == {"first": 8}
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "SUCCEEDED"
