"""The `treadle` client commands against a real `treadle dev`, run as a user runs them: a
subprocess configured only by the AWS CLI's variables (credentials file, profile, endpoint)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client

WORKFLOW = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def handler(event, context: DurableContext):
    print(f"hello from {event['who']}")
    total = context.step(lambda _: {"sum": event["a"] + event["b"]}, name="add")
    if event.get("wait"):
        context.wait(Duration.from_seconds(event["wait"]), name="pause")
    if event.get("callback"):
        context.wait_for_callback(lambda cid, ctx: None, name="approval")
    return total
"""


def treadle(
    server: ServerProcess, *args: str, profile: str = "treadle"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_SHARED_CREDENTIALS_FILE": str(server.data_dir / "credentials"),
        "AWS_PROFILE": profile,
        "AWS_ENDPOINT_URL": server.url,
    }
    return subprocess.run(
        [sys.executable, "-m", "treadle.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(proc))


@pytest.fixture(scope="module")
def deployed(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    code = tmp_path_factory.mktemp("code")
    (code / "handler.py").write_text(WORKFLOW)
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "junk.pyc").write_bytes(b"not code")
    made = as_json(treadle(server, "functions", "deploy", str(code), "--name", "adder", "--json"))
    assert made["FunctionName"] == "adder" and made["Handler"] == "handler.handler"
    return "adder"


def run(server: ServerProcess, name: str, event: dict[str, Any]) -> dict[str, Any]:
    lam = client(server)
    lam.invoke(FunctionName="adder", DurableExecutionName=name, Payload=json.dumps(event))
    found = lam.list_durable_executions_by_function(FunctionName="adder", DurableExecutionName=name)
    return found["DurableExecutions"][0]  # type: ignore[no-any-return]


def test_a_deployed_directory_is_listed_without_its_caches(
    server: ServerProcess, deployed: str
) -> None:
    functions = as_json(treadle(server, "functions", "list", "--json"))
    assert [f["FunctionName"] for f in functions] == [deployed]
    code = client(server).get_function(FunctionName=deployed)["Configuration"]["CodeSize"]
    assert code < 1000  # the handler only: __pycache__ was left out
    table = ok(treadle(server, "functions", "list"))
    assert "adder" in table and "handler.handler" in table


def test_executions_are_listed_shown_and_their_history_decoded(
    server: ServerProcess, deployed: str
) -> None:
    ex = run(server, "sum-1", {"who": "ana", "a": 2, "b": 3})
    listed = as_json(treadle(server, "executions", "list", "-f", deployed, "--json"))
    assert ex["DurableExecutionArn"] in [e["DurableExecutionArn"] for e in listed]
    shown = as_json(treadle(server, "executions", "show", "adder/sum-1", "--json"))
    assert shown["Status"] == "SUCCEEDED"
    assert shown["Result"] == {"sum": 5} and shown["InputPayload"]["who"] == "ana"
    events = as_json(treadle(server, "executions", "history", ex["DurableExecutionArn"], "--json"))
    step = next(e for e in events if e["EventType"] == "StepSucceeded")
    assert step["Name"] == "add"
    assert step["StepSucceededDetails"]["Result"]["Payload"] == {"sum": 5}
    table = ok(treadle(server, "executions", "history", "adder/sum-1"))
    assert "StepSucceeded" in table and '{"t":' not in table


def test_filters_narrow_the_list(server: ServerProcess, deployed: str) -> None:
    run(server, "sum-2", {"who": "bo", "a": 1, "b": 1})
    named = as_json(treadle(server, "executions", "list", "--name", "sum-2", "--json"))
    assert [e["DurableExecutionName"] for e in named] == ["sum-2"]
    failed = as_json(treadle(server, "executions", "list", "--status", "FAILED", "--json"))
    assert failed == []


def test_logs_of_one_execution_are_only_its_own(server: ServerProcess, deployed: str) -> None:
    run(server, "log-a", {"who": "alpha", "a": 0, "b": 0})
    run(server, "log-b", {"who": "beta", "a": 0, "b": 0})
    mine = ok(treadle(server, "logs", "adder/log-a"))
    assert "hello from alpha" in mine and "hello from beta" not in mine
    assert "START RequestId" in mine and "REPORT RequestId" in mine
    every = ok(treadle(server, "logs", deployed))
    assert "hello from alpha" in every and "hello from beta" in every


def test_tail_follows_an_execution_until_it_closes(server: ServerProcess, deployed: str) -> None:
    lam = client(server)
    lam.invoke(
        FunctionName="adder",
        InvocationType="Event",
        DurableExecutionName="slow-1",
        Payload=json.dumps({"who": "c", "a": 1, "b": 2, "wait": 2}),
    )
    out = ok(treadle(server, "executions", "tail", "adder/slow-1", "--interval", "0.2"))
    lines = out.splitlines()
    assert any("WaitStarted" in line for line in lines)
    assert any("WaitSucceeded" in line for line in lines)
    assert lines[-1] == "-- SUCCEEDED"


def test_stop_ends_a_waiting_execution(server: ServerProcess, deployed: str) -> None:
    lam = client(server)
    lam.invoke(
        FunctionName="adder",
        InvocationType="Event",
        DurableExecutionName="held-1",
        Payload=json.dumps({"who": "d", "a": 1, "b": 2, "callback": True}),
    )
    for _ in range(200):  # until the execution is parked on its callback
        events = as_json(treadle(server, "executions", "history", "adder/held-1", "--json"))
        if any(e["EventType"] == "CallbackStarted" for e in events):
            break
        time.sleep(0.1)
    ok(treadle(server, "executions", "stop", "adder/held-1", "--error-message", "enough"))
    shown = as_json(treadle(server, "executions", "show", "adder/held-1", "--json"))
    assert shown["Status"] == "STOPPED"
    assert shown["Error"]["ErrorMessage"] == "enough"


def test_redrive_runs_a_failed_execution_again_on_a_fixed_version(
    server: ServerProcess, tmp_path: Path
) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "redrive"  # the checkout's
    args = ("functions", "deploy", str(example), "--name", "checkout")
    ok(treadle(server, *args, "--env", "FAIL_CHARGE=1", "--publish"))
    lam = client(server)
    lam.invoke(FunctionName="checkout:1", DurableExecutionName="order-9", Payload=b"{}")
    ok(treadle(server, *args, "--env", "FAIL_CHARGE=0", "--publish"))
    before = as_json(treadle(server, "executions", "show", "checkout/order-9", "--json"))
    assert before["Status"] == "FAILED"
    answer = as_json(
        treadle(server, "executions", "redrive", "checkout/order-9", "--version", "2", "--json")
    )
    new_arn = answer["executionArn"]
    for _ in range(300):
        status = lam.get_durable_execution(DurableExecutionArn=new_arn)["Status"]
        if status != "RUNNING":
            break
        time.sleep(0.1)
    after = as_json(treadle(server, "executions", "show", new_arn, "--json"))
    assert after["Status"] == "SUCCEEDED"
    assert after["RedrivenFrom"] == before["DurableExecutionArn"]
    # `reserve` was replayed from the record, not run again: the same reservation id.
    history = as_json(treadle(server, "executions", "history", "checkout/order-9", "--json"))
    reserved = next(e for e in history if e["EventType"] == "StepSucceeded")
    assert after["Result"]["reservation"] == reserved["StepSucceededDetails"]["Result"]["Payload"]


def test_the_admin_manages_tenants_and_a_tenant_may_not(server: ServerProcess) -> None:
    made = as_json(
        treadle(
            server,
            "tenants",
            "create",
            "acme",
            "--max-functions",
            "3",
            "--json",
            profile="treadle-admin",
        )
    )
    account = made["tenant"]["accountId"]
    assert made["tenant"]["quotas"]["maxFunctions"] == 3 and made["accessKey"]["secretAccessKey"]
    changed = as_json(
        treadle(
            server, "tenants", "update", account, "--disable", "--json", profile="treadle-admin"
        )
    )
    assert changed["disabled"] is True
    listed = as_json(treadle(server, "tenants", "list", "--json", profile="treadle-admin"))
    assert account in [t["accountId"] for t in listed]
    refused = treadle(server, "tenants", "list")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "AccessDenied" in refused.stderr


def test_mistakes_are_one_line_each(server: ServerProcess, tmp_path: Path) -> None:
    unknown = treadle(server, "executions", "show", "adder/never-ran")
    assert unknown.returncode == 1 and "no execution named 'never-ran'" in unknown.stderr
    bad_ref = treadle(server, "executions", "show", "just-a-name")
    assert bad_ref.returncode == 2 and "FUNCTION/EXECUTION_NAME" in bad_ref.stderr
    missing_fn = treadle(server, "executions", "list", "-f", "nope")
    assert missing_fn.returncode == 1 and "ResourceNotFoundException" in missing_fn.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    no_endpoint = subprocess.run(
        [sys.executable, "-m", "treadle.cli", "functions", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert no_endpoint.returncode == 2 and "no endpoint" in no_endpoint.stderr
    down = treadle(server, "functions", "list", "--endpoint-url", "http://127.0.0.1:9")
    assert down.returncode == 1 and "cannot reach http://127.0.0.1:9" in down.stderr
    for proc in (unknown, bad_ref, missing_fn, no_endpoint, down):
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
