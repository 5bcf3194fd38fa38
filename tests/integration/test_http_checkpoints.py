"""The SDK's checkpoints over HTTP, as on AWS (a bundled SDK, or the channel turned off).

By default sandbox workers send checkpoints over their own channel; this module turns
that off so the whole durable data plane goes through the Lambda-compatible HTTP API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy

WORKFLOW = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration
from aws_durable_execution_sdk_python.lambda_service import LambdaClient


@durable_execution
def handler(event, context: DurableContext):
    first = context.step(lambda ctx: event["n"] + 1, name="first")
    context.wait(Duration.from_seconds(1), name="nap")
    approval = context.wait_for_callback(lambda cid, ctx: None, name="approval")
    transport = type(LambdaClient._cached_boto_client).__module__
    return {"first": first, "approval": approval, "transport": transport}
"""


@pytest.fixture(scope="module")
def http_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    srv = ServerProcess(
        tmp_path_factory.mktemp("http") / "data", env={"TREADLE_DURABLE_CHANNEL": "0"}
    )
    srv.start()
    try:
        yield client(srv)
    finally:
        srv.stop()


def test_sdk_checkpoints_over_http(http_only: Any, tmp_path: Path) -> None:
    lam = http_only
    deploy(lam, "over-http", {"handler.py": WORKFLOW})
    resp = lam.invoke(
        FunctionName="over-http", InvocationType="Event", Payload=json.dumps({"n": 1})
    )
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    deadline = time.monotonic() + 30
    callback_id = None
    while callback_id is None:
        assert time.monotonic() < deadline
        for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]:
            if e["EventType"] == "CallbackStarted":
                callback_id = e["CallbackStartedDetails"]["CallbackId"]
        time.sleep(0.05)
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b"ok")
    while lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ex = lam.get_durable_execution(DurableExecutionArn=arn)
    assert ex["Status"] == "SUCCEEDED"
    result = json.loads(ex["Result"])
    assert result["first"] == 2 and result["approval"] == "ok"
    assert result["transport"].startswith("botocore")  # a real boto3 client, over HTTP
