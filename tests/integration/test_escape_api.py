"""Escape suite, the platform's side: what tenant B's code can do with what it is given.

Tenant B's handler, running next to tenant A on a real `treadle dev`, takes the
credentials and endpoint its sandbox hands it (the sandbox key, `AWS_ENDPOINT_URL_LAMBDA`)
and tries to use them beyond the checkpoint API: create and list functions, read and
stop A's execution, answer A's callback. It also tries to signal the server and A's
worker. Each attempt reports what happened; each must have failed. Afterwards the
server is healthy and A's function, execution and repository are intact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, v1

ROOT = os.geteuid() == 0

ATTACKER = r"""
import json, os, signal

import boto3
from botocore.config import Config


def attempt(fn):
    try:
        fn()
        return "succeeded"
    except Exception as exc:  # report the refusal as the service named it
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code or type(exc).__name__


def handler(event, context):
    lam = boto3.client("lambda", config=Config(retries={"max_attempts": 1}))
    arn = event["victim_arn"]
    zip_bytes = bytes.fromhex(event["zip_hex"])
    report = {
        "endpoint": os.environ.get("AWS_ENDPOINT_URL_LAMBDA"),
        "list_functions": attempt(lambda: lam.list_functions()),
        "create_function": attempt(lambda: lam.create_function(
            FunctionName="planted", Runtime="python3.11", Handler="h.handler",
            Role="arn:aws:iam::123456789012:role/r", Code={"ZipFile": zip_bytes})),
        "get_victim_execution": attempt(lambda: lam.get_durable_execution(
            DurableExecutionArn=arn)),
        "stop_victim_execution": attempt(lambda: lam.stop_durable_execution(
            DurableExecutionArn=arn)),
        "victim_state": attempt(lambda: lam.get_durable_execution_state(
            DurableExecutionArn=arn, CheckpointToken="forged")),
        "answer_victim_callback": attempt(lambda: lam.send_durable_execution_callback_success(
            CallbackId=event["victim_callback"], Result=b"{}")),
    }
    for name, pid in (("server", event["server_pid"]), ("victim_worker", event["victim_pid"])):
        report[f"signal_{name}"] = attempt(lambda: os.kill(pid, signal.SIGKILL))
    return report
"""

VICTIM = """
import os

from aws_durable_execution_sdk_python import DurableContext, durable_execution


def submit(callback_id, ctx):
    with open("/tmp/victim-callback", "w") as f:
        f.write(callback_id)


@durable_execution
def handler(event, context: DurableContext):
    approval = context.wait_for_callback(submit, name="approval")
    return {"approval": approval, "pid": os.getpid()}
"""

PIDS = """
import os

def handler(event, context):
    return os.getpid()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("escape-api") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Scene:
    """Tenant A with a parked execution and a repository; tenant B with its attacker."""

    def __init__(self, server: ServerProcess) -> None:
        admin = server.credentials("treadle-admin")
        status, body = v1(server, "POST", "/v1/tenants", {"name": "tenant-b"}, credentials=admin)
        assert status == 201, body
        self.b = client(
            server,
            credentials=(body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"]),
        )
        self.a = client(server)
        status, body = v1(server, "POST", "/v1/repos", {"name": "victim-repo"})
        assert status in (200, 201), body
        deploy(self.a, "victim", {"handler.py": VICTIM})
        deploy(self.a, "pids", {"handler.py": PIDS}, durable=False)
        started = self.a.invoke(
            FunctionName="victim", InvocationType="Event", Payload=b"{}", DurableExecutionName="v1"
        )
        assert started["StatusCode"] == 202
        self.victim_arn = started["DurableExecutionArn"]
        self.victim_callback = self._callback_id()
        self.victim_pid = json.loads(self.a.invoke(FunctionName="pids")["Payload"].read())
        deploy(self.b, "attacker", {"handler.py": ATTACKER}, durable=False)

    def _callback_id(self) -> str:
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            history = self.a.get_durable_execution_history(DurableExecutionArn=self.victim_arn)
            for event in history["Events"]:
                details = event.get("CallbackStartedDetails")
                if details:
                    return str(details["CallbackId"])
            time.sleep(0.1)
        raise AssertionError("the victim never parked on its callback")


@pytest.fixture(scope="module")
def scene(server: ServerProcess) -> Scene:
    return Scene(server)


@pytest.fixture(scope="module")
def report(server: ServerProcess, scene: Scene) -> dict[str, Any]:
    event = {
        "victim_arn": scene.victim_arn,
        "victim_callback": scene.victim_callback,
        "server_pid": server.proc.pid if server.proc else 0,
        "victim_pid": scene.victim_pid,
        "zip_hex": b"PK\x05\x06".hex() + "00" * 18,
    }
    resp = scene.b.invoke(FunctionName="attacker", Payload=json.dumps(event))
    got: dict[str, Any] = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, got
    return got


@pytest.mark.parametrize(
    "attack",
    [
        "list_functions",
        "create_function",
        "get_victim_execution",
        "stop_victim_execution",
        "victim_state",
        "answer_victim_callback",
    ],
)
def test_the_sandbox_key_reaches_nothing_beyond_its_checkpoints(
    report: dict[str, Any], attack: str
) -> None:
    assert report["endpoint"], "the sandbox was given no endpoint: the attack proves nothing"
    assert report[attack] != "succeeded", report
    # Refused for what the key is, or not found for whose it is; never a server fault.
    assert report[attack] in (
        "AccessDeniedException",
        "ResourceNotFoundException",
        "InvalidParameterValueException",
    ), report


@pytest.mark.skipif(not ROOT, reason="tenant uids (and so signal isolation) need root")
@pytest.mark.parametrize("target", ["signal_server", "signal_victim_worker"])
def test_tenant_code_cannot_signal_the_server_or_another_tenants_worker(
    report: dict[str, Any], target: str
) -> None:
    # PermissionError: another uid's process; ProcessLookupError: not even visible.
    assert report[target] in ("PermissionError", "ProcessLookupError"), report


def test_after_the_attacks_the_server_and_tenant_a_are_intact(
    server: ServerProcess, scene: Scene, report: dict[str, Any]
) -> None:
    status, _ = v1(server, "GET", "/v1/health")
    assert status == 200
    names = {f["FunctionName"] for f in scene.a.list_functions()["Functions"]}
    assert {"victim", "pids"} <= names and "planted" not in names
    assert "planted" not in {f["FunctionName"] for f in scene.b.list_functions()["Functions"]}
    status, body = v1(server, "GET", "/v1/repos/victim-repo")
    assert status == 200, body
    execution = scene.a.get_durable_execution(DurableExecutionArn=scene.victim_arn)
    assert execution["Status"] == "RUNNING"  # neither stopped nor answered by B
    scene.a.send_durable_execution_callback_success(
        CallbackId=scene.victim_callback, Result=json.dumps("yes").encode()
    )
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        execution = scene.a.get_durable_execution(DurableExecutionArn=scene.victim_arn)
        if execution["Status"] != "RUNNING":
            break
        time.sleep(0.1)
    assert execution["Status"] == "SUCCEEDED", execution
    # The callback's result reaches the handler as sent (a JSON text).
    assert json.loads(execution["Result"])["approval"] == json.dumps("yes")
