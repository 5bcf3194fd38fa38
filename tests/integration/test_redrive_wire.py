"""Redrive on the wire, through a real `treadle dev`: version 1 of a 10-step workflow
fails at step 7, version 2 does not. Every step returns a fresh nonce, so a replayed
step shows the nonce recorded by the source while a step that ran again shows a new
one, and the history of the redrive shows which steps started."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, raw_execution, v1, zip_files
from support.workflows import GROUPED_STEPS, TEN_STEPS


def publish_two_versions(lam: Any, name: str, code: str = TEN_STEPS, fail_at: int = 7) -> None:
    deploy(lam, name, {"handler.py": code.format(fail_at=fail_at)}, Publish=True)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    lam.update_function_code(
        FunctionName=name, ZipFile=zip_files({"handler.py": code.format(fail_at=0)})
    )
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"


def deploy_all(lam: Any) -> Any:
    publish_two_versions(lam, "tensteps")
    publish_two_versions(lam, "manysteps")
    publish_two_versions(lam, "grouped", GROUPED_STEPS, fail_at=3)
    return lam


@pytest.fixture(scope="module")
def lam(server: ServerProcess) -> Any:
    return deploy_all(client(server))


def run_v1(lam: Any, name: str = "tensteps") -> str:
    resp = lam.invoke(FunctionName=name, Qualifier="1", Payload=b'{"order": 7}')
    assert resp.get("FunctionError") == "Unhandled"
    return str(resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])


def final(lam: Any, arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ex: dict[str, Any] = lam.get_durable_execution(DurableExecutionArn=arn)
        if ex["Status"] != "RUNNING":
            return ex
        time.sleep(0.05)
    raise AssertionError(f"{arn} is still running")


def history(lam: Any, arn: str) -> list[dict[str, Any]]:
    return lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=1000)["Events"]


def started_steps(lam: Any, arn: str) -> list[str]:
    return [e["Name"] for e in history(lam, arn) if e["EventType"] == "StepStarted"]


def recorded(lam: Any, arn: str) -> dict[str, str]:
    return {
        e["Name"]: json.loads(e["StepSucceededDetails"]["Result"]["Payload"])
        for e in history(lam, arn)
        if e["EventType"] == "StepSucceeded"
    }


def redrive(
    server: ServerProcess,
    arn: str,
    body: dict[str, Any],
    credentials: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    path = f"/v1/executions/{urllib.parse.quote(arn, safe='')}/redrive"
    return v1(server, "POST", path, body, credentials=credentials)


def test_a_workflow_failed_at_step_7_of_10_redriven_on_version_2_runs_4_steps_again(
    server: ServerProcess, lam: Any
) -> None:
    source = run_v1(lam)
    assert started_steps(lam, source) == [f"s{i}" for i in range(1, 8)]
    status, body = redrive(server, source, {"version": "2"})
    assert status == 200, body
    assert body["redrivenFrom"] == source and body["created"] is True
    assert (body["fromOperationName"], body["seededOperations"]) == ("s7", 6)
    arn = body["executionArn"]
    done = final(lam, arn)
    assert done["Status"] == "SUCCEEDED" and done["Version"] == "2"
    assert done["InputPayload"] == '{"order": 7}'
    # Steps 7 to 10 ran again, 1 to 6 were replayed from the record.
    assert started_steps(lam, arn) == ["s7", "s8", "s9", "s10"]
    nonces = json.loads(done["Result"])
    before = recorded(lam, source)
    assert nonces[:6] == [before[f"s{i}"] for i in range(1, 7)]
    assert len(set(nonces)) == 10
    # Linked both ways; the source is otherwise unchanged.
    assert raw_execution(lam, arn)["RedrivenFrom"] == source
    linked = raw_execution(lam, source)
    assert linked["RedrivenTo"] == [arn] and linked["Status"] == "FAILED"
    started = history(lam, arn)[0]
    assert started["EventType"] == "ExecutionStarted"


def test_a_redrive_from_a_named_step_on_the_same_version_fails_there_again(
    server: ServerProcess, lam: Any
) -> None:
    source = run_v1(lam)
    status, body = redrive(server, source, {"fromStep": {"name": "s3"}, "name": "again-1"})
    assert status == 200 and body["seededOperations"] == 2
    done = final(lam, body["executionArn"])
    assert done["Status"] == "FAILED" and done["Version"] == "1"
    assert started_steps(lam, body["executionArn"]) == [f"s{i}" for i in range(3, 8)]
    # The same name again is the same redrive.
    status, again = redrive(server, source, {"fromStep": {"name": "s3"}, "name": "again-1"})
    assert status == 200 and again["created"] is False
    assert again["executionArn"] == body["executionArn"]


def test_what_cannot_be_redriven_gets_a_precise_error(server: ServerProcess, lam: Any) -> None:
    source = run_v1(lam)
    status, body = redrive(server, source, {"fromStep": {"name": "s11"}})
    assert status == 400 and "named 's11'" in body["error"]["message"]
    status, body = redrive(server, source, {"fromStep": {"name": "s1", "occurrence": 0}})
    assert status == 400
    status, body = redrive(server, source, {"version": "9"})
    assert status == 404
    status, body = redrive(server, source, {"surprise": 1})
    assert status == 400
    assert "RedrivenTo" not in raw_execution(lam, source)


@pytest.fixture(scope="module")
def tenant_b(server: ServerProcess) -> Iterator[tuple[str, str]]:
    admin = server.credentials("treadle-admin")
    status, body = v1(server, "POST", "/v1/tenants", {"name": "redrive-b"}, credentials=admin)
    assert status == 201
    yield body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"]


def test_another_tenant_cannot_redrive_an_execution_or_a_function(
    server: ServerProcess, lam: Any, tenant_b: tuple[str, str]
) -> None:
    source = run_v1(lam)
    status, body = redrive(server, source, {}, credentials=tenant_b)
    assert status == 404 and body["error"]["code"] == "ResourceNotFoundException"
    path = "/v1/functions/tensteps/executions:redrive"
    status, _ = v1(server, "POST", path, {}, credentials=tenant_b)
    assert status == 404
    assert "RedrivenTo" not in raw_execution(lam, source)


def test_a_batch_redrives_each_failed_execution_once(server: ServerProcess, lam: Any) -> None:
    after = time.time() - 1
    sources = [run_v1(lam, "manysteps") for _ in range(3)]
    path = "/v1/functions/manysteps/executions:redrive"
    body = {"filter": {"status": "FAILED", "startedAfter": after}, "version": "2", "max": 2}
    status, out = v1(server, "POST", path, body)
    assert status == 200, out
    first = out["results"]
    assert len(first) == 2 and all(r["redrive"]["seededOperations"] == 6 for r in first)
    status, out = v1(server, "POST", path, body)  # goes on with the one not redriven yet
    rest = out["results"]
    assert [r["sourceArn"] for r in first + rest] == sources
    for r in first + rest:
        assert final(lam, r["redrive"]["executionArn"])["Status"] == "SUCCEEDED"
    assert v1(server, "POST", path, body)[1] == {"results": []}


def test_a_step_failed_inside_a_child_context_reruns_the_context_replaying_its_done_steps(
    server: ServerProcess, lam: Any
) -> None:
    source = run_v1(lam, "grouped")
    status, body = redrive(server, source, {"version": "2"})
    assert status == 200 and body["fromOperationName"] == "s3"
    assert body["seededOperations"] == 2  # s1, and s2 inside the context
    done = final(lam, body["executionArn"])
    assert done["Status"] == "SUCCEEDED", done
    events = history(lam, body["executionArn"])
    assert [e["Name"] for e in events if e["EventType"] == "StepStarted"] == ["s3", "s4"]
    assert [e["Name"] for e in events if e["EventType"] == "ContextStarted"] == ["group"]
    before = recorded(lam, source)
    nonces = json.loads(done["Result"])
    assert nonces[:2] == [before["s1"], before["s2"]] and len(set(nonces)) == 4
