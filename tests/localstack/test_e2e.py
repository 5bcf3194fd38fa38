"""End to end on the CDK stack deployed to LocalStack, through its HTTP API only.

The platform admin creates a tenant through `/v1/tenants`; with the tenant's key pair,
boto3 deploys a durable function (a step, a short wait, a callback) and starts it; the
callback is answered; the execution completes, is listed under its function, and its
history holds the step, the wait and the callback in order. Tenants and functions are
left in place (unique names per run) for inspection.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from infra import names

# Cold starts under LocalStack pull runtime images and import the dependency layer (under
# QEMU on x86_64 hosts): far slower than Lambda, hence the generous limits.
pytestmark = [pytest.mark.localstack, pytest.mark.timeout(1800)]
TIMEOUT_S = 600.0
POLL_S = 1.0
WAIT_S = 2

WORKFLOW = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration


@durable_step
def double(step_ctx, n):
    return n * 2


@durable_execution
def handler(event, context: DurableContext):
    first = context.step(double(event["n"]), name="double")
    context.wait(Duration.from_seconds(event["wait"]), name="pause")
    approval = context.wait_for_callback(lambda callback_id, ctx: None, name="approval")
    return {"first": first, "approval": approval}
"""

# Tenant code runs on LocalStack's stock Python runtime, whose boto3 predates the
# durable-execution API the SDK calls: the zip carries the SDK and a boto3 of its own
# (a Lambda runtime puts the function's own directory first on sys.path).
VENDORED = (
    "aws_durable_execution_sdk_python",
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "dateutil",
    "urllib3",
    "six",
)
# botocore's service models: only Lambda's (and the shared endpoint/partition files).
BOTOCORE_MODELS = ("lambda",)


def _keep(relative: Path) -> bool:
    parts = relative.parts
    if "__pycache__" in parts or relative.suffix == ".pyc":
        return False
    if parts[:2] == ("botocore", "data") and len(parts) > 3:
        return parts[2] in BOTOCORE_MODELS
    return True


def tenant_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("handler.py", WORKFLOW)
        for module in VENDORED:
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                continue  # not installed here, so not a dependency of what is
            if spec.submodule_search_locations:
                root = Path(next(iter(spec.submodule_search_locations)))
                for path in sorted(root.rglob("*")):
                    relative = path.relative_to(root.parent)
                    if path.is_file() and _keep(relative):
                        zf.write(path, relative.as_posix())
            else:
                zf.write(spec.origin, Path(spec.origin).name)
    return buf.getvalue()


def _v1(
    stack: Any, method: str, path: str, payload: Any, credentials: tuple[str, str]
) -> tuple[int, Any]:
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    request = urllib.request.Request(
        stack.api_url + path.lstrip("/"),
        data=json.dumps(payload).encode() if payload is not None else None,
        method=method,
        headers={"authorization": f"Basic {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode(errors="replace")


@pytest.fixture(scope="module")
def tenant(stack: Any, admin_credentials: tuple[str, str], api_health: None) -> tuple[str, str]:
    """A new tenant's key pair, made by the platform admin."""
    status, body = _v1(
        stack, "POST", "/v1/tenants", {"name": f"e2e-{uuid.uuid4().hex[:8]}"}, admin_credentials
    )
    if status in (401, 403):
        pytest.fail(
            f"the admin key was refused ({status} {body}): it is not the one the platform "
            "functions have; run localstack/deploy.sh again",
            pytrace=False,
        )
    assert status == 201, (status, body)
    key = body["accessKey"]
    return key["accessKeyId"], key["secretAccessKey"]


@pytest.fixture(scope="module")
def lam(stack: Any, tenant: tuple[str, str]) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=stack.api_url,
        region_name=stack.region,
        aws_access_key_id=tenant[0],
        aws_secret_access_key=tenant[1],
        config=Config(
            retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=300
        ),
    )


@pytest.fixture(scope="module")
def function(lam: Any, stack: Any) -> str:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    role = stack.outputs.get(
        names.OUTPUT_TENANT_ROLE_ARN, "arn:aws:iam::000000000000:role/treadle-tenant"
    )
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": tenant_zip()},
        Timeout=60,
        MemorySize=256,
        DurableConfig={"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1},
    )
    assert created["FunctionName"] == name
    return name


def _status(lam: Any, arn: str) -> dict[str, Any]:
    return lam.get_durable_execution(DurableExecutionArn=arn)  # type: ignore[no-any-return]


def _ended(execution: dict[str, Any]) -> str:
    return f"the execution ended {execution['Status']}: {execution.get('Error')}"


def _callback_id(lam: Any, arn: str) -> str:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        events = lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=1000)
        for event in events["Events"]:
            if event["EventType"] == "CallbackStarted":
                return str(event["CallbackStartedDetails"]["CallbackId"])
        execution = _status(lam, arn)
        assert execution["Status"] == "RUNNING", _ended(execution)
        time.sleep(POLL_S)
    raise AssertionError(f"no callback started in {TIMEOUT_S:.0f} s")


def _wait_for(lam: Any, arn: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        execution = _status(lam, arn)
        if execution["Status"] == want:
            return execution
        assert execution["Status"] == "RUNNING", _ended(execution)
        assert time.monotonic() < deadline, f"still RUNNING after {TIMEOUT_S:.0f} s"
        time.sleep(POLL_S)


@pytest.fixture(scope="module")
def execution(lam: Any, function: str) -> dict[str, Any]:
    """One run of the workflow: started, its callback answered, then succeeded."""
    name = f"run-{uuid.uuid4().hex[:8]}"
    resp = lam.invoke(
        FunctionName=function,
        InvocationType="Event",
        Payload=json.dumps({"n": 21, "wait": WAIT_S}),
        DurableExecutionName=name,
    )
    assert resp["StatusCode"] == 202
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    callback_id = _callback_id(lam, arn)
    # No serdes configured: the SDK hands the callback's raw result to the handler.
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b"approved")
    return {"arn": arn, "name": name, "final": _wait_for(lam, arn, "SUCCEEDED")}


def test_execution_completes(execution: dict[str, Any]) -> None:
    final = execution["final"]
    assert final["DurableExecutionArn"] == execution["arn"]
    assert final["DurableExecutionName"] == execution["name"]
    assert json.loads(final["Result"]) == {"first": 42, "approval": "approved"}


def test_listed_by_function(lam: Any, function: str, execution: dict[str, Any]) -> None:
    listed: list[dict[str, Any]] = []
    marker = None
    while True:
        kwargs: dict[str, Any] = {"FunctionName": function, "MaxItems": 50}
        if marker:
            kwargs["Marker"] = marker
        page = lam.list_durable_executions_by_function(**kwargs)
        listed += page["DurableExecutions"]
        marker = page.get("NextMarker")
        if not marker:
            break
    mine = [e for e in listed if e["DurableExecutionArn"] == execution["arn"]]
    assert len(mine) == 1, listed
    assert mine[0]["Status"] == "SUCCEEDED"
    assert mine[0]["DurableExecutionName"] == execution["name"]
    only_succeeded = lam.list_durable_executions_by_function(
        FunctionName=function, Statuses=["SUCCEEDED"]
    )["DurableExecutions"]
    assert execution["arn"] in [e["DurableExecutionArn"] for e in only_succeeded]


def test_history_has_expected_events(lam: Any, execution: dict[str, Any]) -> None:
    events: list[dict[str, Any]] = []
    marker = None
    while True:
        kwargs: dict[str, Any] = {"DurableExecutionArn": execution["arn"], "MaxItems": 25}
        if marker:
            kwargs["Marker"] = marker
        page = lam.get_durable_execution_history(**kwargs)
        events += page["Events"]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
    types = [e["EventType"] for e in events]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded", types

    def first(event_type: str, name: str | None = None) -> int:
        for i, e in enumerate(events):
            if e["EventType"] == event_type and (name is None or e.get("Name") == name):
                return i
        raise AssertionError(f"no {event_type} {name or ''} in {types}")

    step_done = first("StepSucceeded", "double")
    assert first("StepStarted", "double") < step_done
    assert json.loads(events[step_done]["StepSucceededDetails"]["Result"]["Payload"]) == 42
    wait_started, wait_done = first("WaitStarted", "pause"), first("WaitSucceeded", "pause")
    callback_started, callback_done = first("CallbackStarted"), first("CallbackSucceeded")
    assert step_done < wait_started < wait_done < callback_started < callback_done
    assert types.count("WaitSucceeded") == 1 and types.count("CallbackSucceeded") == 1
    # The wait and the callback each suspended the execution, ending an invocation.
    assert types.count("InvocationCompleted") >= 2, types
