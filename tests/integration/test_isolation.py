"""Tenant B, with valid keys of its own, reaches nothing of tenant A's, on every route.

A owns a function (with a published version), a durable execution waiting on a
callback, logs, and a repository with a commit. B tries every operation of the Lambda
surface, CloudWatch Logs, /v1 and Git on them: each is "not found" (as if absent) and
nothing of A's changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.server import ServerProcess, client, deploy, v1, zip_files

WAITER = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution

@durable_execution
def handler(event, context: DurableContext):
    print("tenant A was here")
    return context.wait_for_callback(lambda cid, ctx: None, name="approval")
"""


class World:
    def __init__(self, server: ServerProcess) -> None:
        admin = server.credentials("treadle-admin")
        status, body = v1(server, "POST", "/v1/tenants", {"name": "tenant-b"}, credentials=admin)
        assert status == 201
        self.b_keys = (body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"])
        self.a = client(server)
        self.b = client(server, credentials=self.b_keys)
        self.b_logs = client(server, "logs", credentials=self.b_keys)
        self.a_logs = client(server, "logs")
        fn = deploy(self.a, "secret-fn", {"handler.py": WAITER}, Publish=True)
        self.fn_arn = fn["FunctionArn"]
        self.account = self.fn_arn.split(":")[4]
        resp = self.a.invoke(FunctionName="secret-fn", InvocationType="Event", Payload=b"{}")
        self.exec_arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
        self.callback_id = self._callback_id()
        status, _ = v1(server, "POST", "/v1/repos", {"name": "a-repo"})
        assert status == 201
        status, body = v1(
            server,
            "POST",
            "/v1/repos/a-repo/commits",
            {"message": "A's secret", "files": {"secret.txt": {"content": "a-only"}}},
        )
        assert status == 201
        self.commit = body["sha"]

    def _callback_id(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = self.a.get_durable_execution_history(DurableExecutionArn=self.exec_arn)
            for event in events["Events"]:
                if event["EventType"] == "CallbackStarted":
                    return str(event["CallbackStartedDetails"]["CallbackId"])
            time.sleep(0.05)
        raise AssertionError("the callback never started")


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[World]:
    yield World(server)


def _refused(
    call: Callable[[], Any], codes: tuple[str, ...] = ("ResourceNotFoundException",)
) -> None:
    with pytest.raises(ClientError) as exc:
        call()
    assert exc.value.response["Error"]["Code"] in codes, exc.value.response["Error"]


def test_functions_and_versions(server: ServerProcess, world: World) -> None:
    b = world.b
    status, body = v1(server, "GET", "/v1/functions/secret-fn/versions", credentials=world.b_keys)
    assert status == 404, body
    for ref in ("secret-fn", world.fn_arn, world.fn_arn + ":1"):
        _refused(lambda ref=ref: b.get_function(FunctionName=ref))
        _refused(lambda ref=ref: b.get_function_configuration(FunctionName=ref))
        _refused(lambda ref=ref: b.invoke(FunctionName=ref, Payload=b"{}"))
        _refused(lambda ref=ref: b.invoke(FunctionName=ref, InvocationType="Event", Payload=b"{}"))
    _refused(lambda: b.list_versions_by_function(FunctionName=world.fn_arn))
    _refused(lambda: b.publish_version(FunctionName=world.fn_arn))
    _refused(
        lambda: b.update_function_code(
            FunctionName=world.fn_arn, ZipFile=zip_files({"handler.py": "x = 1"})
        )
    )
    _refused(lambda: b.delete_function(FunctionName=world.fn_arn))
    _refused(lambda: b.delete_function(FunctionName=world.fn_arn, Qualifier="1"))
    assert [f["FunctionName"] for f in b.list_functions()["Functions"]] == []
    # B's function of the same name is B's own: A's stays as it was.
    deploy(b, "secret-fn", {"handler.py": "def handler(e, c):\n    return 'b'\n"}, durable=False)
    assert json.loads(b.invoke(FunctionName="secret-fn", Payload=b"{}")["Payload"].read()) == "b"
    a_fn = world.a.get_function(FunctionName="secret-fn")["Configuration"]
    assert a_fn["FunctionArn"] == world.fn_arn and "DurableConfig" in a_fn


def test_executions_and_callbacks(world: World) -> None:
    b, arn = world.b, world.exec_arn
    _refused(lambda: b.get_durable_execution(DurableExecutionArn=arn))
    _refused(lambda: b.get_durable_execution_history(DurableExecutionArn=arn))
    _refused(
        lambda: b.get_durable_execution_state(DurableExecutionArn=arn, CheckpointToken="x" * 40),
        ("ResourceNotFoundException", "InvalidParameterValueException"),
    )
    _refused(
        lambda: b.checkpoint_durable_execution(
            DurableExecutionArn=arn, CheckpointToken="x" * 40, Updates=[]
        ),
        ("ResourceNotFoundException", "InvalidParameterValueException"),
    )
    _refused(lambda: b.stop_durable_execution(DurableExecutionArn=arn))
    _refused(lambda: b.list_durable_executions_by_function(FunctionName=world.fn_arn))
    cid = world.callback_id
    _refused(lambda: b.send_durable_execution_callback_success(CallbackId=cid, Result=b"1"))
    _refused(lambda: b.send_durable_execution_callback_failure(CallbackId=cid, Error={}))
    _refused(lambda: b.send_durable_execution_callback_heartbeat(CallbackId=cid))
    # A's execution is untouched: still waiting for A's answer, which completes it.
    a = world.a
    assert a.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    a.send_durable_execution_callback_success(CallbackId=cid, Result=b'"approved"')
    deadline = time.monotonic() + 30
    while a.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = a.get_durable_execution(DurableExecutionArn=arn)
    assert done["Status"] == "SUCCEEDED" and "approved" in done["Result"]


def test_logs(world: World) -> None:
    group = "/aws/lambda/secret-fn"
    deadline = time.monotonic() + 10
    a_logs = world.a_logs

    def arrived() -> bool:
        try:
            return bool(a_logs.filter_log_events(logGroupName=group).get("events"))
        except ClientError as exc:  # the asynchronous invoke has not logged yet
            assert exc.response["Error"]["Code"] == "ResourceNotFoundException"
            return False

    while not arrived():
        assert time.monotonic() < deadline, "A's logs never arrived"
        time.sleep(0.1)
    try:
        events = world.b_logs.filter_log_events(logGroupName=group)["events"]
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceNotFoundException"
    else:  # B's own function of that name may have logged: never A's lines
        assert all("tenant A was here" not in e["message"] for e in events)


def test_repositories(server: ServerProcess, world: World) -> None:
    keys = world.b_keys
    status, body = v1(server, "GET", "/v1/repos", credentials=keys)
    # B's own deploy made B's own `functions` repository: nothing of A's is listed.
    assert status == 200 and [r["name"] for r in body["repositories"]] in ([], ["functions"])
    for method, path, payload in (
        ("GET", "/v1/repos/a-repo", None),
        ("GET", "/v1/repos/a-repo/tree?ref=main", None),
        ("GET", "/v1/repos/a-repo/blob?ref=main&path=secret.txt", None),
        ("GET", "/v1/repos/a-repo/commits?ref=main", None),
        ("POST", "/v1/repos/a-repo/commits", {"message": "B", "files": {"x": {"content": "b"}}}),
        ("DELETE", "/v1/repos/a-repo", None),
    ):
        status, body = v1(server, method, path, payload, credentials=keys)
        assert status == 404, (method, path, body)
    deploy_a = {"repo": "a-repo", "handler": "secret.handler"}
    status, body = v1(server, "POST", "/v1/functions/stolen/deploy", deploy_a, credentials=keys)
    assert status == 404, body
    # B creating a repository of the same name gets its own, empty one.
    assert v1(server, "POST", "/v1/repos", {"name": "a-repo"}, credentials=keys)[0] == 201
    status, body = v1(server, "GET", "/v1/repos/a-repo/commits?ref=main", credentials=keys)
    assert status == 404
    status, body = v1(server, "GET", "/v1/repos/a-repo/commits?ref=main")
    assert status == 200 and body["commits"][0]["sha"] == world.commit


def test_git_refs(server: ServerProcess, world: World, tmp_path: Path) -> None:
    host = server.url.removeprefix("http://")
    b_url = f"http://{world.b_keys[0]}:{world.b_keys[1]}@{host}/git/{world.account}/a-repo.git"
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(tmp_path),
    }
    for args in (["ls-remote", b_url], ["clone", b_url, str(tmp_path / "stolen")]):
        out = subprocess.run(["git", *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "a-only" not in out.stdout
        assert "not found" in out.stderr.lower() or "not exist" in out.stderr.lower(), out.stderr
    # A push into A's repository with B's keys is refused the same way.
    work = tmp_path / "b-work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    (work / "evil.txt").write_text("b")
    git = ["git", "-C", str(work), "-c", "user.name=B", "-c", "user.email=b@b"]
    subprocess.run([*git, "add", "."], check=True, env=env)
    subprocess.run([*git, "commit", "-qm", "evil"], check=True, env=env)
    out = subprocess.run(
        [*git, "push", b_url, "main"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    status, body = v1(server, "GET", "/v1/repos/a-repo")
    assert status == 200 and body["refs"]["refs/heads/main"] == world.commit
