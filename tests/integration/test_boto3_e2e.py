"""End to end through `boto3.client("lambda", endpoint_url=...)` and the unmodified SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.server import deploy
from support.workflows import WORKFLOW

PLAIN = """
def handler(event, context):
    return {"echo": event, "fn": context.function_name}
"""


def _arn(resp: dict[str, Any]) -> str:
    return resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]


def _wait_status(lam: Any, arn: str, want: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        ex = lam.get_durable_execution(DurableExecutionArn=arn)
        if ex["Status"] == want:
            return ex  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{arn} is {ex['Status']}, wanted {want}"
        time.sleep(0.05)


def _callback_id(lam: Any, arn: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        for e in events:
            if e["EventType"] == "CallbackStarted":
                return str(e["CallbackStartedDetails"]["CallbackId"])
        time.sleep(0.05)
    raise AssertionError("no callback started")


@pytest.fixture(scope="module")
def wf(lam: Any) -> str:
    deploy(lam, "wf", {"handler.py": WORKFLOW})
    return "wf"


def test_create_get_list_functions_with_paging(lam: Any, wf: str) -> None:
    for i in range(3):
        deploy(lam, f"plain-{i}", {"handler.py": PLAIN}, durable=False)
    got = lam.get_function(FunctionName=wf)["Configuration"]
    assert got["FunctionName"] == wf and got["State"] == "Active" and got["DurableConfig"]
    names: list[str] = []
    marker = None
    while True:
        kwargs: dict[str, Any] = {"MaxItems": 2}
        if marker:
            kwargs["Marker"] = marker
        page = lam.list_functions(**kwargs)
        assert len(page["Functions"]) <= 2
        names += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert {"wf", "plain-0", "plain-1", "plain-2"} <= set(names)
    with pytest.raises(ClientError) as err:
        lam.create_function(
            FunctionName=wf, Runtime="python3.11", Role="r", Handler="h.h", Code={"ZipFile": b"x"}
        )
    assert err.value.response["Error"]["Code"] in (
        "ResourceConflictException",
        "InvalidParameterValueException",
    )


def test_plain_function_runs_directly(lam: Any) -> None:
    deploy(lam, "plain-direct", {"handler.py": PLAIN}, durable=False)
    resp = lam.invoke(FunctionName="plain-direct", Payload=json.dumps({"a": 1}))
    assert json.loads(resp["Payload"].read()) == {"echo": {"a": 1}, "fn": "plain-direct"}
    assert "x-amz-durable-execution-arn" not in resp["ResponseMetadata"]["HTTPHeaders"]


def test_sync_invoke_returns_result_and_history_pages(lam: Any, wf: str) -> None:
    resp = lam.invoke(FunctionName=wf, Payload=json.dumps({"n": 21, "wait": 1}))
    assert resp["StatusCode"] == 200
    assert json.loads(resp["Payload"].read()) == {"first": 42}
    arn = _arn(resp)
    ex = lam.get_durable_execution(DurableExecutionArn=arn)
    assert ex["Status"] == "SUCCEEDED" and json.loads(ex["Result"]) == {"first": 42}
    events: list[dict[str, Any]] = []
    marker = None
    while True:
        kwargs: dict[str, Any] = {"DurableExecutionArn": arn, "MaxItems": 2}
        if marker:
            kwargs["Marker"] = marker
        page = lam.get_durable_execution_history(**kwargs)
        events += page["Events"]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
    types = [e["EventType"] for e in events]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert types.count("WaitSucceeded") == 1 and types.count("StepSucceeded") == 1
    newest = lam.get_durable_execution_history(
        DurableExecutionArn=arn, ReverseOrder=True, MaxItems=1
    )
    assert newest["Events"][0]["EventType"] == "ExecutionSucceeded"


def test_async_invoke_and_callback_success(lam: Any, wf: str) -> None:
    resp = lam.invoke(
        FunctionName=wf,
        InvocationType="Event",
        Payload=json.dumps({"n": 1, "callback": True}),
        DurableExecutionName="approve-1",
    )
    assert resp["StatusCode"] == 202
    arn = _arn(resp)
    cb = _callback_id(lam, arn)
    lam.send_durable_execution_callback_heartbeat(CallbackId=cb)
    # The SDK hands a callback's raw result to the handler (no serdes configured).
    lam.send_durable_execution_callback_success(CallbackId=cb, Result=b"yes")
    ex = _wait_status(lam, arn, "SUCCEEDED")
    assert json.loads(ex["Result"]) == {"first": 2, "approval": "yes"}
    with pytest.raises(ClientError) as err:
        lam.send_durable_execution_callback_success(CallbackId=cb, Result=b'"again"')
    assert err.value.response["Error"]["Code"] == "CallbackTimeoutException"
    # Same name and input: the start is idempotent.
    again = lam.invoke(
        FunctionName=wf,
        InvocationType="Event",
        Payload=json.dumps({"n": 1, "callback": True}),
        DurableExecutionName="approve-1",
    )
    assert _arn(again) == arn
    with pytest.raises(ClientError) as err:
        lam.invoke(
            FunctionName=wf,
            InvocationType="Event",
            Payload=json.dumps({"n": 2}),
            DurableExecutionName="approve-1",
        )
    assert err.value.response["Error"]["Code"] == "DurableExecutionAlreadyStartedException"


def test_callback_failure_fails_execution(lam: Any, wf: str) -> None:
    resp = lam.invoke(
        FunctionName=wf, InvocationType="Event", Payload=json.dumps({"n": 1, "callback": True})
    )
    arn = _arn(resp)
    cb = _callback_id(lam, arn)
    lam.send_durable_execution_callback_failure(
        CallbackId=cb, Error={"ErrorType": "Rejected", "ErrorMessage": "no"}
    )
    ex = _wait_status(lam, arn, "FAILED")
    assert ex["Error"]["ErrorMessage"]


def test_stop_pause_resume_delete_and_list(lam: Any, wf: str) -> None:
    stopped = _arn(
        lam.invoke(
            FunctionName=wf, InvocationType="Event", Payload=json.dumps({"n": 1, "wait": 60})
        )
    )
    paused = _arn(
        lam.invoke(FunctionName=wf, InvocationType="Event", Payload=json.dumps({"n": 1, "wait": 1}))
    )
    lam.pause_durable_execution(DurableExecutionArn=paused, Reason="maintenance")
    assert lam.get_durable_execution(DurableExecutionArn=paused)["Status"] == "PAUSED"
    time.sleep(1.5)  # the wait elapses while paused: no invocation happens
    assert lam.get_durable_execution(DurableExecutionArn=paused)["Status"] == "PAUSED"
    lam.resume_durable_execution(DurableExecutionArn=paused, Reason="done")
    _wait_status(lam, paused, "SUCCEEDED")
    types = [
        e["EventType"]
        for e in lam.get_durable_execution_history(DurableExecutionArn=paused)["Events"]
    ]
    assert "ExecutionPaused" in types and "ExecutionResumed" in types

    _callback_or_wait = _wait_status(lam, stopped, "RUNNING")
    with pytest.raises(ClientError) as err:
        lam.delete_durable_execution(DurableExecutionArn=stopped)
    assert err.value.response["Error"]["Code"] == "ResourceConflictException"
    resp = lam.stop_durable_execution(
        DurableExecutionArn=stopped, Error={"ErrorType": "Manual", "ErrorMessage": "enough"}
    )
    assert resp["StopTimestamp"]
    ex = lam.get_durable_execution(DurableExecutionArn=stopped)
    assert ex["Status"] == "STOPPED" and ex["Error"]["ErrorType"] == "Manual"

    listed = lam.list_durable_executions_by_function(FunctionName=wf, Statuses=["STOPPED"])
    assert [e["DurableExecutionArn"] for e in listed["DurableExecutions"]] == [stopped]
    seen: list[str] = []
    marker = None
    while True:
        kwargs: dict[str, Any] = {"FunctionName": wf, "MaxItems": 2}
        if marker:
            kwargs["Marker"] = marker
        page = lam.list_durable_executions_by_function(**kwargs)
        seen += [e["DurableExecutionArn"] for e in page["DurableExecutions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert stopped in seen and paused in seen and len(seen) == len(set(seen))

    lam.delete_durable_execution(DurableExecutionArn=stopped)
    with pytest.raises(ClientError) as err:
        lam.get_durable_execution(DurableExecutionArn=stopped)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


PINNED = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def handler(event, context: DurableContext):
    context.wait(Duration.from_seconds(1))
    return "CODE"
"""


def test_execution_is_pinned_to_the_code_it_started_on(lam: Any) -> None:
    from support.server import zip_files

    deploy(lam, "pinned", {"handler.py": PINNED.replace("CODE", "v1")})
    old = _arn(lam.invoke(FunctionName="pinned", InvocationType="Event", Payload=b"{}"))
    _wait_for_event(lam, old, "WaitStarted")
    lam.update_function_code(
        FunctionName="pinned", ZipFile=zip_files({"handler.py": PINNED.replace("CODE", "v2")})
    )
    assert json.loads(_wait_status(lam, old, "SUCCEEDED")["Result"]) == "v1"
    fresh = lam.invoke(FunctionName="pinned", Payload=b"{}")
    assert json.loads(fresh["Payload"].read()) == "v2"


def _wait_for_event(lam: Any, arn: str, event_type: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        if any(e["EventType"] == event_type for e in events):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {event_type}")


def test_list_executions_filters(lam: Any) -> None:
    deploy(lam, "filters", {"handler.py": WORKFLOW})
    lam.publish_version(FunctionName="filters")
    before = time.time()
    arns = []
    for i in range(3):
        resp = lam.invoke(
            FunctionName="filters",
            Payload=json.dumps({"n": i}),
            DurableExecutionName=f"run-{i}",
            Qualifier="1" if i == 2 else "$LATEST",
        )
        arns.append(_arn(resp))
        time.sleep(0.01)
    running = _arn(
        lam.invoke(
            FunctionName="filters",
            InvocationType="Event",
            Payload=json.dumps({"n": 9, "callback": True}),
            DurableExecutionName="waiting",
        )
    )
    _callback_id(lam, running)

    def names(**kwargs: Any) -> list[str]:
        page = lam.list_durable_executions_by_function(FunctionName="filters", **kwargs)
        return [e["DurableExecutionName"] for e in page["DurableExecutions"]]

    assert names() == ["run-0", "run-1", "run-2", "waiting"]
    assert names(ReverseOrder=True) == ["waiting", "run-2", "run-1", "run-0"]
    assert names(Statuses=["RUNNING"]) == ["waiting"]
    # Treadle's QUEUED (boto3 does not validate the enum) is a filter like the others.
    assert names(Statuses=["QUEUED"]) == []
    assert names(Statuses=["QUEUED", "RUNNING"]) == ["waiting"]
    assert names(Statuses=["SUCCEEDED"], DurableExecutionName="run-1") == ["run-1"]
    assert names(Qualifier="1") == ["run-2"]
    started_second = lam.get_durable_execution(DurableExecutionArn=arns[1])["StartTimestamp"]
    assert names(StartedAfter=started_second) == ["run-1", "run-2", "waiting"]
    assert names(StartedBefore=started_second) == ["run-0", "run-1"]
    assert names(StartedBefore=before - 60) == []
    lam.stop_durable_execution(DurableExecutionArn=running)
