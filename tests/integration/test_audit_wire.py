"""The audit log on the wire, through a real `treadle dev`: every mutating call of a
tenant or of the admin leaves exactly one record with who (key id and kind), what,
which resource, the outcome and the source address; refused calls are recorded with
their error code; a tenant reads only its own records (docs/operating.md, "Audit")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.exceptions import ClientError

from support.server import ServerProcess, client, deploy, new_tenant, v1, zip_files

ADMIN = "treadle-admin"
PLAIN = "def handler(event, context):\n    return event\n"
WAITS = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    return context.wait_for_callback(lambda callback_id, ctx: None, name="gate")
"""


class World:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.admin = server.credentials(ADMIN)
        self.a_account, self.a = new_tenant(server, "audit-a")
        self.b_account, self.b = new_tenant(server, "audit-b")
        self.lam_a = client(server, credentials=self.a)

    def audit(self, creds: tuple[str, str], path: str = "/v1/audit", **query: Any) -> list[Any]:
        url = path + ("?" + urlencode(query) if query else "")
        status, body = v1(self.server, "GET", url, credentials=creds)
        assert status == 200, body
        return list(body["records"])

    def arn(self, name: str) -> str:
        return f"arn:aws:lambda:us-east-1:{self.a_account}:function:{name}"


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> World:
    return World(server)


def _only(records: list[Any], action: str) -> dict[str, Any]:
    found = [r for r in records if r["action"] == action]
    assert len(found) == 1, records
    return dict(found[0])


def test_function_changes_each_leave_one_record_with_who_and_where(world: World) -> None:
    lam = world.lam_a
    deploy(lam, "audited", {"handler.py": PLAIN}, durable=False)
    lam.update_function_code(FunctionName="audited", ZipFile=zip_files({"handler.py": PLAIN}))
    lam.update_function_configuration(FunctionName="audited", Timeout=9)
    lam.publish_version(FunctionName="audited")
    lam.delete_function(FunctionName="audited")
    records = world.audit(world.a, resource=world.arn("audited"))
    assert [r["action"] for r in records] == [
        "DeleteFunction",
        "PublishVersion",
        "UpdateFunctionConfiguration",
        "UpdateFunctionCode",
        "CreateFunction",
    ]
    for r in records:
        assert r["outcome"] == "succeeded"
        assert r["accessKeyId"] == world.a[0]
        assert r["principal"] == "tenant-key"
        assert r["tenant"] == world.a_account
        assert r["sourceAddress"] == "127.0.0.1"
    assert [r["time"] for r in records] == sorted((r["time"] for r in records), reverse=True)


def test_refused_calls_are_recorded_with_their_error_code(world: World) -> None:
    lam = world.lam_a
    deploy(lam, "twice", {"handler.py": PLAIN}, durable=False)
    with pytest.raises(ClientError):
        deploy(lam, "twice", {"handler.py": PLAIN}, durable=False)
    with pytest.raises(ClientError):
        lam.delete_function(FunctionName="never-made")
    records = world.audit(world.a, action="CreateFunction", resource="/2015-03-31/functions")
    assert [r["outcome"] for r in records] == ["ResourceConflictException"]
    missing = world.audit(world.a, action="DeleteFunction", outcome="ResourceNotFoundException")
    assert len(missing) == 1
    assert missing[0]["resource"] == world.arn("never-made")
    # A tenant key on an admin route: refused, and recorded against that key.
    status, _ = v1(world.server, "POST", "/v1/tenants", {"name": "x"}, credentials=world.a)
    assert status == 403
    refused = world.audit(world.admin, "/v1/admin/audit", action="CreateTenant",
                          outcome="AccessDeniedException")  # fmt: skip
    assert [r["accessKeyId"] for r in refused] == [world.a[0]]


def test_admin_changes_to_tenants_and_keys_are_recorded_about_that_tenant(world: World) -> None:
    account, _ = new_tenant(world.server, "audit-c")
    server = world.server
    status, _ = v1(server, "PATCH", f"/v1/tenants/{account}", {"quotas": {"maxFunctions": 7}},
                   credentials=world.admin)  # fmt: skip
    assert status == 200
    status, key = v1(server, "POST", f"/v1/tenants/{account}/keys", credentials=world.admin)
    assert status == 201
    status, _ = v1(server, "POST", f"/v1/tenants/{account}/keys/{key['accessKeyId']}/rotate",
                   credentials=world.admin)  # fmt: skip
    assert status == 201
    records = world.audit(world.admin, "/v1/admin/audit", tenant=account)
    assert [r["action"] for r in records] == ["RotateKey", "CreateKey", "UpdateTenant",
                                               "CreateTenant"]  # fmt: skip
    admin_key = world.admin[0]
    assert {(r["accessKeyId"], r["principal"], r["outcome"]) for r in records} == {
        (admin_key, "admin", "succeeded")
    }
    assert _only(records, "CreateKey")["resource"].endswith(f"/keys/{key['accessKeyId']}")


def test_a_tenant_never_sees_another_tenants_records(world: World) -> None:
    deploy(world.lam_a, "private", {"handler.py": PLAIN}, durable=False)
    mine = world.audit(world.b)
    assert mine, "B sees at least its own CreateTenant"
    assert {r["tenant"] for r in mine} == {world.b_account}
    assert world.audit(world.b, resource=world.arn("private")) == []
    assert world.audit(world.b, action="CreateFunction") == []
    # The admin's listing is the admin's: a tenant key is refused.
    status, body = v1(world.server, "GET", f"/v1/admin/audit?tenant={world.a_account}",
                      credentials=world.b)  # fmt: skip
    assert status == 403, body


def test_bad_filters_are_refused_precisely(world: World) -> None:
    for query, word in (("since=yesterday", "since"), ("limit=0", "limit"), ("action=", "action")):
        status, body = v1(world.server, "GET", f"/v1/audit?{query}", credentials=world.a)
        assert status == 400, body
        assert word in body["error"]["message"]
    status, body = v1(world.server, "GET", "/v1/admin/audit?tenant=abc", credentials=world.admin)
    assert status == 400 and "tenant" in body["error"]["message"]


def test_pages_are_newest_first_and_follow_the_marker(world: World) -> None:
    for i in range(5):
        deploy(world.lam_a, f"paged-{i}", {"handler.py": PLAIN}, durable=False)
    seen: list[str] = []
    marker = None
    while True:
        query = {"action": "CreateFunction", "resource": world.arn("paged-"), "limit": 2}
        if marker:
            query["marker"] = marker
        status, body = v1(world.server, "GET", "/v1/audit?" + urlencode(query), credentials=world.a)
        assert status == 200
        seen += [r["resource"].rsplit(":", 1)[1] for r in body["records"]]
        marker = body["nextMarker"]
        if not marker:
            break
    assert seen == [f"paged-{i}" for i in reversed(range(5))]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")
def test_a_git_push_is_recorded(world: World, tmp_path: Path) -> None:
    assert v1(world.server, "POST", "/v1/repos", {"name": "pushed"}, credentials=world.a)[0] == 201
    host = world.server.url.removeprefix("http://")
    url = f"http://{world.a[0]}:{world.a[1]}@{host}/git/{world.a_account}/pushed.git"
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(tmp_path),
        "GIT_AUTHOR_NAME": "A",
        "GIT_AUTHOR_EMAIL": "a@example.com",
        "GIT_COMMITTER_NAME": "A",
        "GIT_COMMITTER_EMAIL": "a@example.com",
    }
    work = tmp_path / "work"
    work.mkdir()

    def git(*args: str) -> None:
        proc = subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=work,
                              env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr

    git("init", "-q")
    (work / "README").write_text("hello\n")
    git("add", "README")
    git("commit", "-q", "-m", "first")
    git("push", "-q", url, "HEAD:refs/heads/main")
    records = world.audit(world.a, action="Push")
    assert len(records) == 1, records
    assert records[0]["resource"] == f"/git/{world.a_account}/pushed.git/git-receive-pack"
    assert (records[0]["accessKeyId"], records[0]["outcome"]) == (world.a[0], "succeeded")


def test_stopping_an_execution_and_deleting_a_facet_are_recorded(world: World) -> None:
    lam = world.lam_a
    deploy(lam, "waits", {"handler.py": WAITS})
    resp = lam.invoke(FunctionName="waits", InvocationType="Event", Payload=json.dumps({}))
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    deadline = time.monotonic() + 60
    while lam.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lam.stop_durable_execution(DurableExecutionArn=arn)
    stopped = world.audit(world.a, action="StopExecution")
    assert len(stopped) == 1 and stopped[0]["outcome"] == "succeeded"
    assert arn in stopped[0]["resource"]

    assert v1(world.server, "POST", "/v1/facets/audited", credentials=world.a)[0] == 200
    assert v1(world.server, "DELETE", "/v1/facets/audited", credentials=world.a)[0] == 204
    assert v1(world.server, "DELETE", "/v1/facets/audited", credentials=world.a)[0] == 404
    deleted = world.audit(world.a, action="DeleteFacet")
    assert [r["outcome"] for r in deleted] == ["ResourceNotFoundException", "succeeded"]
