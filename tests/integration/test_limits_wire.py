"""Limits per execution on the wire, through a real `treadle dev` and the official SDK:
tenants with their own `maxOperationsPerExecution` / `maxPayloadBytesPerOperation` run
the same ten-step workflow; the limits are pinned when an execution starts; the usage
counters survive a kill -9 and a replay does not count twice (docs/limits.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, new_tenant, raw_execution, v1

STEPS = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

ONCE = StepConfig(retry_strategy=RetryPresets.none())


def work(i, size):
    def run(step_ctx):
        return "x" * size if size else i

    return run


@durable_execution
def handler(event, context: DurableContext):
    if event.get("gate"):
        context.wait_for_callback(lambda callback_id, ctx: None, name="gate")
    size = event.get("size", 0)
    return [context.step(work(i, size), name=f"s{i}", config=ONCE) for i in range(1, 11)]
"""
ADMIN = "treadle-admin"


def final(lam: Any, arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ex: dict[str, Any] = lam.get_durable_execution(DurableExecutionArn=arn)
        if ex["Status"] not in ("RUNNING", "PAUSED"):
            return ex
        time.sleep(0.05)
    raise AssertionError(f"{arn} is still running")


def start(lam: Any, event: dict[str, Any], sync: bool = True) -> tuple[str, dict[str, Any]]:
    kind = "RequestResponse" if sync else "Event"
    resp = lam.invoke(FunctionName="steps", InvocationType=kind, Payload=json.dumps(event))
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    return arn, resp


def callback_id(lam: Any, arn: str, parked: bool = False) -> str:
    """The id of the execution's callback; with `parked`, once the invocation that
    started it has ended (its InvocationCompleted is the last event)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        ended = events[-1]["EventType"] == "InvocationCompleted"
        for e in events:
            if e["EventType"] == "CallbackStarted" and (ended or not parked):
                return str(e["CallbackStartedDetails"]["CallbackId"])
        time.sleep(0.05)
    raise AssertionError(f"no callback in {arn}")


def persisted(lam: Any, arn: str) -> int:
    """The payload bytes of an execution's history: inputs, results and errors."""
    total = 0
    history = lam.get_durable_execution_history(
        DurableExecutionArn=arn, IncludeExecutionData=True, MaxItems=1000
    )
    for event in history["Events"]:
        for key, details in event.items():
            if not key.endswith("Details") or not isinstance(details, dict):
                continue
            for field in ("Input", "Result", "Error"):
                value = details.get(field, {}).get("Payload")
                if isinstance(value, dict):
                    value = json.dumps(value, separators=(",", ":"))
                total += len(value.encode()) if value is not None else 0
    return total


def tenant_client(server: ServerProcess, name: str, **quotas: int) -> tuple[str, Any]:
    account, keys = new_tenant(server, name, **quotas)
    lam = client(server, credentials=keys)
    deploy(lam, "steps", {"handler.py": STEPS})
    return account, lam


def patch_quotas(server: ServerProcess, account: str, quotas: dict[str, Any]) -> tuple[int, Any]:
    admin = server.credentials(ADMIN)
    return v1(server, "PATCH", f"/v1/tenants/{account}", {"quotas": quotas}, credentials=admin)


def test_a_tenant_limited_to_5_operations_fails_a_10_step_workflow_and_the_default_does_not(
    server: ServerProcess,
) -> None:
    _, small = tenant_client(server, "five-ops", maxOperationsPerExecution=5)
    arn, resp = start(small, {})
    assert resp.get("FunctionError") == "Unhandled"
    assert json.loads(resp["Payload"].read())["errorType"] == "ExecutionLimitExceeded"
    done = final(small, arn)
    assert done["Status"] == "FAILED"
    # The EXECUTION operation and s1..s4 are five operations; s5 would be the sixth.
    assert done["Error"] == {
        "ErrorType": "ExecutionLimitExceeded",
        "ErrorMessage": "operations per execution: 6 > 5",
    }
    events = small.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    assert [e["Name"] for e in events if e["EventType"] == "StepSucceeded"] == [
        f"s{i}" for i in range(1, 5)
    ]
    assert [e["EventType"] for e in events[-2:]] == ["InvocationCompleted", "ExecutionFailed"]
    assert raw_execution(small, arn)["ExecutionUsage"]["Operations"] == 5

    _, default = tenant_client(server, "default-ops")
    arn, resp = start(default, {})
    assert "FunctionError" not in resp
    assert json.loads(resp["Payload"].read()) == list(range(1, 11))
    raw = raw_execution(default, arn)
    assert raw["ExecutionLimits"] == {
        "MaxOperations": 3000,
        "MaxHistoryBytes": 100 * 1024 * 1024,
        "MaxPayloadBytes": 256 * 1024,
    }
    assert raw["ExecutionUsage"] == {"Operations": 11, "HistoryBytes": persisted(default, arn)}


def test_the_admin_sets_the_limits_per_tenant_and_bad_values_get_a_precise_error(
    server: ServerProcess,
) -> None:
    account, _ = new_tenant(server, "limits-admin")
    admin = server.credentials(ADMIN)
    status, body = v1(server, "GET", f"/v1/tenants/{account}", credentials=admin)
    assert status == 200
    quotas = body["quotas"]
    assert quotas["maxOperationsPerExecution"] == 3000
    assert quotas["maxHistoryBytesPerExecution"] == 104_857_600
    assert quotas["maxPayloadBytesPerOperation"] == 262_144
    status, body = patch_quotas(server, account, {"maxOperationsPerExecution": 10})
    assert status == 200 and body["quotas"]["maxOperationsPerExecution"] == 10
    assert body["quotas"]["maxFunctions"] == quotas["maxFunctions"]  # the rest unchanged
    status, body = patch_quotas(server, account, {"maxOperationsPerExecution": 0})
    assert status == 400 and "maxOperationsPerExecution" in body["error"]["message"]
    status, body = patch_quotas(server, account, {"maxPayloadBytesPerOperation": 7 * 1024**2})
    assert status == 400 and "maxPayloadBytesPerOperation" in body["error"]["message"]
    # A tenant cannot raise its own limits, nor another's.
    raise_to = {"quotas": {"maxOperationsPerExecution": 10**6}}
    own, keys = new_tenant(server, "limits-self")
    for target in (own, account):
        status, body = v1(server, "PATCH", f"/v1/tenants/{target}", raise_to, credentials=keys)
        assert status == 403 and body["error"]["code"] == "AccessDeniedException"
    status, body = v1(server, "GET", f"/v1/tenants/{account}", credentials=admin)
    assert body["quotas"]["maxOperationsPerExecution"] == 10


def test_the_limits_are_pinned_at_start_a_quota_change_applies_to_new_executions(
    server: ServerProcess,
) -> None:
    account, lam = tenant_client(server, "pinned", maxOperationsPerExecution=5)
    arn, _ = start(lam, {"gate": True}, sync=False)
    gate = callback_id(lam, arn)
    status, _ = patch_quotas(server, account, {"maxOperationsPerExecution": 3000})
    assert status == 200
    lam.send_durable_execution_callback_success(CallbackId=gate, Result=b'"go"')
    done = final(lam, arn)
    assert done["Status"] == "FAILED" and done["Error"]["ErrorType"] == "ExecutionLimitExceeded"
    assert done["Error"]["ErrorMessage"].endswith(" > 5")
    assert raw_execution(lam, arn)["ExecutionLimits"]["MaxOperations"] == 5
    # Started after the change: the new quota.
    arn, resp = start(lam, {})
    assert "FunctionError" not in resp
    assert raw_execution(lam, arn)["ExecutionLimits"]["MaxOperations"] == 3000


def test_a_payload_over_the_tenants_limit_is_refused_and_the_sdk_fails_the_execution(
    server: ServerProcess,
) -> None:
    _, lam = tenant_client(server, "small-payloads", maxPayloadBytesPerOperation=1024)
    arn, _ = start(lam, {"size": 1000})  # a JSON string of 1,002 bytes: fits
    assert final(lam, arn)["Status"] == "SUCCEEDED"
    arn, _ = start(lam, {"size": 1100})
    done = final(lam, arn)
    assert done["Status"] == "FAILED"
    assert "exceeds 1024 bytes" in json.dumps(done["Error"])
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    assert not [e for e in events if e["EventType"] == "StepSucceeded"]


@pytest.mark.slow
def test_usage_survives_a_kill_and_the_replay_after_it_does_not_count_twice(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data)
    first.start()
    try:
        lam = client(first)
        deploy(lam, "steps", {"handler.py": STEPS})
        arn, _ = start(lam, {"gate": True}, sync=False)
        gate = callback_id(lam, arn, parked=True)
        parked = raw_execution(lam, arn)["ExecutionUsage"]
    finally:
        first.kill()  # kill -9, also when the test fails: no server outlives it
        if first.proc is not None and first.proc.stdout is not None:
            first.proc.stdout.close()
    # The EXECUTION operation, and wait_for_callback's context, callback and step.
    assert parked["Operations"] == 4
    second = ServerProcess(data)
    second.start()
    try:
        lam = client(second)
        assert raw_execution(lam, arn)["ExecutionUsage"] == parked
        lam.send_durable_execution_callback_success(CallbackId=gate, Result=b'"go"')
        assert final(lam, arn)["Status"] == "SUCCEEDED"
        usage = raw_execution(lam, arn)["ExecutionUsage"]
        # Everything before the gate was replayed, not checkpointed again: only the ten
        # steps are new, and the bytes are exactly the payloads the history holds.
        assert usage["Operations"] == parked["Operations"] + 10
        assert usage["HistoryBytes"] == persisted(lam, arn)
    finally:
        second.stop()
