"""Bad input gets the documented error in AWS's shape and leaves stored state consistent."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.server import ServerProcess, deploy, signed, zip_files

# A durable function without the SDK: it receives the raw envelope and probes the
# checkpoint API with invalid batches and tokens, then reports the error codes.
PROBE = """
import json, os, boto3
from botocore.exceptions import ClientError

def code(fn):
    try:
        fn()
        return "OK"
    except ClientError as e:
        return e.response["Error"]["Code"] + ":" + e.response["Error"]["Message"]

def handler(event, context):
    lam = boto3.client("lambda")
    arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
    cp = lambda updates, tok=None: lam.checkpoint_durable_execution(
        DurableExecutionArn=arn, CheckpointToken=tok or token, Updates=updates)
    step = lambda i, a, **kw: {"Id": i, "Type": "STEP", "Action": a, **kw}
    out = {
        "exec_not_last": code(lambda: cp([{"Id": "x", "Type": "EXECUTION", "Action": "SUCCEED"},
                                          step("s", "START")])),
        "duplicate": code(lambda: cp([step("s", "START"), step("s", "START")])),
        "bad_parent": code(lambda: cp([step("s", "START", ParentId="missing")])),
        "bad_action": code(lambda: cp([{"Id": "c", "Type": "CALLBACK", "Action": "SUCCEED"}])),
        "wait_no_seconds": code(lambda: cp([{"Id": "w", "Type": "WAIT", "Action": "START"}])),
        "too_big": code(lambda: cp([step("s", "SUCCEED", Payload="x" * 300000)])),
        "forged": code(lambda: cp([], tok="Zm9yZ2VkOjE6MA" + "A" * 24)),
    }
    ok = lam.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken=token,
        Updates=[step("s", "START")])
    out["valid_after_refusals"] = "CheckpointToken" in ok
    out["reused_token"] = code(lambda: cp([step("t", "START")]))
    return {"Status": "SUCCEEDED", "Result": json.dumps(out)}
"""

FAULTY = """
import os, sys, time

def handler(event, context):
    kind = event["kind"]
    if kind == "raise":
        raise ValueError("bad value")
    if kind == "exit":
        os._exit(3)
    if kind == "hang":
        time.sleep(60)
    if kind == "memory":
        blob = bytearray(2 * 1024 * 1024 * 1024)
        return len(blob)
    return "fine"
"""


CRASHY = """
import os
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    os._exit(3)
"""


def _raw(
    server: ServerProcess, method: str, path: str, body: bytes
) -> tuple[int, dict[str, str], Any]:
    headers = signed(server, method, path, body, {"content-type": "application/json"})
    req = urllib.request.Request(server.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"null")


def test_malformed_json_and_unknown_routes(server: ServerProcess) -> None:
    status, headers, body = _raw(server, "POST", "/2015-03-31/functions", b"{not json")
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidParameterValueException"
    assert "json" in body["message"]
    status, headers, body = _raw(server, "POST", "/2015-03-31/functions", b'{"FunctionName": 5}')
    assert status == 400 and "FunctionName" in body["message"]
    status, headers, _ = _raw(server, "GET", "/nope", b"")
    assert status == 404
    status, _, body = _raw(server, "GET", "/v1/health", b"")
    assert status == 200 and body == {"status": "ok"}


def test_unknown_function_and_execution(lam: Any) -> None:
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName="does-not-exist", Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    unknown = (
        "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/n/"
        "00000000-0000-0000-0000-000000000000"
    )
    with pytest.raises(ClientError) as err:
        lam.get_durable_execution(DurableExecutionArn=unknown)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        lam.get_durable_execution_history(DurableExecutionArn="arn:aws:lambda:nonsense")
    assert err.value.response["Error"]["Code"] in (
        "InvalidParameterValueException",
        "ResourceNotFoundException",
    )
    with pytest.raises(ClientError) as err:
        lam.send_durable_execution_callback_success(CallbackId="deadbeef", Result=b"1")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_checkpoint_rules_on_the_wire(lam: Any) -> None:
    deploy(lam, "probe", {"handler.py": PROBE})
    resp = lam.invoke(FunctionName="probe", Payload=b"{}")
    out = json.loads(resp["Payload"].read())
    for key in ("exec_not_last", "duplicate", "bad_parent", "bad_action", "wait_no_seconds"):
        assert out[key].startswith("InvalidParameterValueException:"), (key, out[key])
    assert out["too_big"].startswith("InvalidParameterValueException:")
    assert out["forged"].startswith("InvalidParameterValueException:")
    assert out["valid_after_refusals"] is True
    assert out["reused_token"].startswith("InvalidParameterValueException:")
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    types = [
        e["EventType"] for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    ]
    # Only the one valid update was recorded; the refused batches left nothing behind.
    assert types == [
        "ExecutionStarted",
        "StepStarted",
        "InvocationCompleted",
        "ExecutionSucceeded",
    ]


def test_oversized_invoke_payload(lam: Any) -> None:
    deploy(lam, "faulty-big", {"handler.py": FAULTY}, durable=False)
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName="faulty-big", Payload=b'"' + b"x" * (6 * 1024 * 1024 + 10) + b'"')
    assert err.value.response["Error"]["Code"] == "RequestTooLargeException"


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("raise", "ValueError"),
        ("exit", "Runtime.ExitError"),
        ("hang", "Sandbox.Timedout"),
        ("memory", "Runtime.OutOfMemory"),
    ],
)
def test_faulty_plain_handlers(lam: Any, kind: str, error_type: str) -> None:
    name = f"faulty-{kind}"
    deploy(lam, name, {"handler.py": FAULTY}, durable=False, timeout=1, memory=128)
    resp = lam.invoke(FunctionName=name, Payload=json.dumps({"kind": kind}))
    assert resp["FunctionError"] == "Unhandled"
    body = json.loads(resp["Payload"].read())
    assert body["errorType"] == error_type, body
    # The sandbox recovered: the same function still works.
    ok = lam.invoke(FunctionName=name, Payload=json.dumps({"kind": "none"}))
    assert json.loads(ok["Payload"].read()) == "fine"


def test_durable_handler_crash_is_retried_then_fails(lam: Any) -> None:
    deploy(lam, "crashy", {"handler.py": CRASHY}, timeout=5)
    resp = lam.invoke(FunctionName="crashy", InvocationType="Event", Payload=b"{}")
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    deadline = time.monotonic() + 30
    while lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ex = lam.get_durable_execution(DurableExecutionArn=arn)
    assert ex["Status"] == "FAILED" and ex["Error"]["ErrorType"] == "Runtime.ExitError"
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    completed = [e for e in events if e["EventType"] == "InvocationCompleted"]
    assert len(completed) == 3 and all(e["InvocationCompletedDetails"]["Error"] for e in completed)
    assert events[-1]["EventType"] == "ExecutionFailed"


def test_ephemeral_storage_is_configured_and_validated(server: ServerProcess, lam: Any) -> None:
    files = {"handler.py": "def handler(event, context):\n    return 1\n"}
    assert deploy(lam, "eph-default", files, durable=False)["EphemeralStorage"] == {"Size": 512}
    deploy(lam, "eph-big", files, durable=False, EphemeralStorage={"Size": 2048})
    assert lam.get_function_configuration(FunctionName="eph-big")["EphemeralStorage"] == {
        "Size": 2048
    }
    got = lam.get_function(FunctionName="eph-big")["Configuration"]["EphemeralStorage"]
    assert got == {"Size": 2048}
    # Raw requests: boto3 would refuse some of these before sending them.
    for size in (511, 10241, "big"):
        request = {
            "FunctionName": "eph-bad",
            "Runtime": "python3.11",
            "Role": "arn:aws:iam::123456789012:role/treadle-tenant",
            "Handler": "handler.handler",
            "Code": {"ZipFile": base64.b64encode(zip_files(files)).decode()},
            "EphemeralStorage": {"Size": size},
        }
        body = json.dumps(request).encode()
        status, headers, answer = _raw(server, "POST", "/2015-03-31/functions", body)
        assert status == 400, answer
        assert headers["x-amzn-errortype"] == "InvalidParameterValueException"
        assert "EphemeralStorage" in answer["message"], answer
    with pytest.raises(ClientError) as err:
        lam.get_function(FunctionName="eph-bad")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
