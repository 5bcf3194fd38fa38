"""Garbage collection on the wire, through a real `treadle dev`, boto3 and the official
SDK (docs/operating.md, "Garbage collection"): the admin sets a tenant's `gcPolicy`, a
dry run lists what would go and removes nothing, a run removes it; a version that an
execution waiting on its callback is pinned to survives, and so does an aliased one;
each removal is in the audit log; a tenant cannot call the route."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_limits_wire import STEPS, callback_id, final

from support.server import ServerProcess, client, deploy, new_tenant, v1, zip_files

ADMIN = "treadle-admin"


def versions(lam: Any) -> list[str]:
    return [v["Version"] for v in lam.list_versions_by_function(FunctionName="steps")["Versions"]]


def publish_four(lam: Any) -> None:
    """Versions 1 to 4 of `steps`, each of its own code."""
    deploy(lam, "steps", {"handler.py": STEPS})
    for i in range(1, 5):
        if i > 1:
            code = zip_files({"handler.py": STEPS + f"\n# {i}\n"})
            lam.update_function_code(FunctionName="steps", ZipFile=code)
            lam.get_waiter("function_updated_v2").wait(FunctionName="steps")
        assert lam.publish_version(FunctionName="steps")["Version"] == str(i)


def gc(server: ServerProcess, account: str, body: Any, keys: tuple[str, str]) -> tuple[int, Any]:
    return v1(server, "POST", f"/v1/tenants/{account}/gc", body, credentials=keys)


def test_gc_keeps_pinned_and_aliased_versions_and_audits_each_removal(
    server: ServerProcess,
) -> None:
    admin = server.credentials(ADMIN)
    account, keys = new_tenant(server, "gc-a")
    lam = client(server, credentials=keys)
    publish_four(lam)
    resp = lam.invoke(
        FunctionName="steps",
        Qualifier="1",
        InvocationType="Event",
        Payload=json.dumps({"gate": True}),
    )
    waiting = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    gate = callback_id(lam, waiting, parked=True)  # parked on its callback: waiting
    lam.create_alias(FunctionName="steps", Name="live", FunctionVersion="2")

    status, tenant = v1(
        server, "PATCH", f"/v1/tenants/{account}", {"gcPolicy": {"keepVersions": 1}},
        credentials=admin,
    )  # fmt: skip
    assert status == 200, tenant
    assert tenant["gcPolicy"] == {
        "keepVersions": 1, "idleRepoDays": None, "idleFacetDays": None, "idleFunctionDays": None
    }  # fmt: skip
    status, shown = v1(server, "GET", f"/v1/tenants/{account}", credentials=admin)
    assert status == 200 and shown["gcPolicy"]["keepVersions"] == 1
    assert shown["quotas"]["maxFunctions"] == 500  # the quotas are untouched

    status, plan = gc(server, account, {"dryRun": True}, admin)
    assert status == 200, plan
    assert plan["dryRun"] is True
    assert [(r["kind"], r["resource"]) for r in plan["removed"]] == [("functionVersion", "steps:3")]
    assert plan["removed"][0]["sizeBytes"] > 0 and plan["removed"][0]["reason"]
    assert versions(lam) == ["$LATEST", "1", "2", "3", "4"]  # nothing removed

    status, usage_before = v1(server, "GET", f"/v1/tenants/{account}/usage", credentials=admin)
    status, done = gc(server, account, {}, admin)
    assert status == 200 and done["dryRun"] is False
    assert [r["resource"] for r in done["removed"]] == ["steps:3"]
    assert versions(lam) == ["$LATEST", "1", "2", "4"]
    _, usage_after = v1(server, "GET", f"/v1/tenants/{account}/usage", credentials=admin)
    assert usage_after["versions"] == usage_before["versions"] - 1
    assert usage_after["codeBytes"] == usage_before["codeBytes"] - done["removed"][0]["sizeBytes"]

    # The pinned execution still runs to its end on version 1.
    lam.send_durable_execution_callback_success(CallbackId=gate, Result=json.dumps("ok"))
    assert final(lam, waiting)["Status"] == "SUCCEEDED"
    status, later = gc(server, account, {}, admin)
    assert [r["resource"] for r in later["removed"]] == ["steps:1"]  # released
    assert versions(lam) == ["$LATEST", "2", "4"]  # 2: the alias still names it

    status, audit = v1(
        server, "GET", f"/v1/admin/audit?tenant={account}&action=CollectFunctionVersion",
        credentials=admin,
    )  # fmt: skip
    assert status == 200, audit
    records = audit["records"]
    assert sorted(r["resource"].rsplit(":", 1)[1] for r in records) == ["1", "3"]
    assert {(r["principal"], r["accessKeyId"], r["outcome"]) for r in records} == {
        ("admin", admin[0], "succeeded")
    }


def test_a_tenant_cannot_run_gc_nor_set_a_policy(server: ServerProcess) -> None:
    account, keys = new_tenant(server, "gc-b")
    for path, method, body in (
        (f"/v1/tenants/{account}/gc", "POST", {"dryRun": True}),
        (f"/v1/tenants/{account}", "PATCH", {"gcPolicy": {"keepVersions": 0}}),
    ):
        status, answer = v1(server, method, path, body, credentials=keys)
        assert status == 403 and answer["error"]["code"] == "AccessDeniedException", answer
    status, audit = v1(
        server, "GET", f"/v1/admin/audit?tenant={account}&action=CollectGarbage",
        credentials=server.credentials(ADMIN),
    )  # fmt: skip
    assert [r["outcome"] for r in audit["records"]] == ["AccessDeniedException"]


def test_bad_policies_and_bodies_are_refused_precisely(server: ServerProcess) -> None:
    admin = server.credentials(ADMIN)
    account, _ = new_tenant(server, "gc-c")
    path = f"/v1/tenants/{account}"
    for policy, words in (
        ({"keepVersions": -1}, "keepVersions"),
        ({"keepVersions": "3"}, "keepVersions"),
        ({"idleRepoDays": 0}, "idleRepoDays"),
        ({"idleFacetDays": True}, "idleFacetDays"),
        ({"keepVersion": 3}, "keepVersion"),
    ):
        status, answer = v1(server, "PATCH", path, {"gcPolicy": policy}, credentials=admin)
        assert status == 400, answer
        assert answer["error"]["code"] == "InvalidParameterValueException"
        assert words in answer["error"]["message"], answer
    for body in ({"dryRun": "yes"}, {"limit": 0}, {"dry": True}):
        status, answer = gc(server, account, body, admin)
        assert status == 400 and answer["error"]["code"] == "InvalidParameterValueException"
    status, answer = gc(server, "999999999999", {"dryRun": True}, admin)
    assert status == 404 and answer["error"]["code"] == "ResourceNotFoundException"
    # A tenant without a policy: nothing planned.
    status, plan = gc(server, account, {"dryRun": True}, admin)
    assert status == 200 and plan["removed"] == [] and plan["truncated"] is False


def _git(env: dict[str, str], cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")
def test_gc_reclaims_git_objects_no_ref_reaches_and_moves_repository_bytes(
    tmp_path: Path,
) -> None:
    srv = ServerProcess(tmp_path / "data", env={"TREADLE_GC_PACK_GRACE_SECONDS": "0"})
    srv.start()
    try:
        admin = srv.credentials(ADMIN)
        account, keys = new_tenant(srv, "gc-git")
        assert v1(srv, "POST", "/v1/repos", {"name": "app"}, credentials=keys)[0] == 201
        host = srv.url.removeprefix("http://")
        url = f"http://{keys[0]}:{keys[1]}@{host}/git/{account}/app.git"
        env = {
            **os.environ, "HOME": str(tmp_path), "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@x",
            "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@x",
        }  # fmt: skip
        _git(env, tmp_path, "clone", "-q", url, "work")
        work = tmp_path / "work"
        (work / "app.py").write_text("print('kept')\n")
        _git(env, work, "add", "app.py")
        _git(env, work, "commit", "-q", "-m", "kept")
        kept = _git(env, work, "rev-parse", "HEAD")
        _git(env, work, "push", "-q", "origin", "HEAD:refs/heads/main")
        _git(env, work, "checkout", "-q", "-b", "topic")
        (work / "secret.txt").write_text("only on topic\n")
        _git(env, work, "add", "secret.txt")
        _git(env, work, "commit", "-q", "-m", "topic")
        _git(env, work, "push", "-q", "origin", "HEAD:refs/heads/topic")
        _git(env, work, "push", "-q", "origin", ":refs/heads/topic")

        usage_path = f"/v1/tenants/{account}/usage"
        _, before = v1(srv, "GET", usage_path, credentials=admin)
        assert before["repositoryBytes"] > 0
        policy = {"gcPolicy": {"idleRepoDays": 365}}  # any policy turns reclaiming on
        assert v1(srv, "PATCH", f"/v1/tenants/{account}", policy, credentials=admin)[0] == 200

        status, plan = gc(srv, account, {"dryRun": True}, admin)
        assert status == 200, plan
        assert [(r["kind"], r["resource"], r["sizeBytes"]) for r in plan["removed"]] == [
            ("gitObjects", "app", None)
        ]
        assert "3 Git objects" in plan["removed"][0]["reason"]
        status, done = gc(srv, account, {}, admin)
        assert [(r["kind"], r["resource"]) for r in done["removed"]] == [("gitObjects", "app")]
        _, after = v1(srv, "GET", usage_path, credentials=admin)
        assert 0 < after["repositoryBytes"] < before["repositoryBytes"]

        _git(env, tmp_path, "clone", "-q", url, "again")
        assert _git(env, tmp_path / "again", "rev-parse", "HEAD") == kept
        _git(env, tmp_path / "again", "fsck", "--full")
        _, audit = v1(
            srv, "GET", f"/v1/admin/audit?tenant={account}&action=CollectGitObjects",
            credentials=admin,
        )  # fmt: skip
        assert [r["resource"] for r in audit["records"]] == ["/v1/repos/app"]
    finally:
        srv.stop()


def test_code_packages_no_version_names_are_reclaimed_by_the_platform_run(
    tmp_path: Path,
) -> None:
    srv = ServerProcess(tmp_path / "data", env={"TREADLE_GC_PACK_GRACE_SECONDS": "0"})
    srv.start()
    try:
        zips = tmp_path / "data" / "code" / "zips"
        check_code_packages_reclaimed(srv, lambda: {p.stem for p in zips.glob("*.zip")})
    finally:
        srv.stop()


def check_code_packages_reclaimed(srv: ServerProcess, packages: Callable[[], set[str]]) -> None:
    """On a platform started with no grace; `packages`: the code store's keys."""
    admin = srv.credentials(ADMIN)
    _, keys = new_tenant(srv, "gc-code")
    lam = client(srv, credentials=keys)
    deploy(lam, "steps", {"handler.py": STEPS})
    old = packages()
    assert len(old) == 1
    lam.update_function_code(
        FunctionName="steps", ZipFile=zip_files({"handler.py": STEPS + "\n# 2\n"})
    )
    lam.get_waiter("function_updated_v2").wait(FunctionName="steps")
    other_keys = new_tenant(srv, "gc-code-other")[1]
    # Another tenant's function with the first code: the package is still named.
    deploy(client(srv, credentials=other_keys), "same", {"handler.py": STEPS})
    status, plan = v1(srv, "POST", "/v1/admin/gc", {"dryRun": True}, credentials=admin)
    assert status == 200, plan
    assert plan["removed"] == [] and plan["accountId"] == ""
    client(srv, credentials=other_keys).delete_function(FunctionName="same")

    status, plan = v1(srv, "POST", "/v1/admin/gc", {"dryRun": True}, credentials=admin)
    assert [(r["kind"], r["resource"]) for r in plan["removed"]] == [
        ("codePackage", k) for k in sorted(old)
    ]
    assert packages() >= old  # a dry run removes nothing
    status, done = v1(srv, "POST", "/v1/admin/gc", {}, credentials=admin)
    assert status == 200 and len(done["removed"]) == len(old)
    assert not packages() & old
    resp = lam.invoke(FunctionName="steps", Payload=json.dumps({}))  # on the new code
    assert "FunctionError" not in resp
    assert json.loads(resp["Payload"].read()) == list(range(1, 11))

    status, refused = v1(srv, "POST", "/v1/admin/gc", {}, credentials=keys)
    assert status == 403, refused
    _, audit = v1(srv, "GET", "/v1/admin/audit?action=CollectCodePackage", credentials=admin)
    assert sorted(r["resource"] for r in audit["records"]) == [f"code/{k}" for k in sorted(old)]
