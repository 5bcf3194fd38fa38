"""`GET /v1/tenants/{id}/usage` on the wire, through a real `treadle dev` and boto3:
what a tenant's functions and executions count, who may read it (the admin: anyone's;
a tenant: only its own), and that the counters survive a kill -9 (docs/operating.md)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_limits_wire import STEPS, callback_id, final, start

from support.server import ServerProcess, client, deploy, new_tenant, v1

ADMIN = "treadle-admin"


def usage(server: ServerProcess, account: str, keys: tuple[str, str]) -> tuple[int, Any]:
    return v1(server, "GET", f"/v1/tenants/{account}/usage", credentials=keys)


def test_a_tenant_reads_its_usage_the_admin_anyones_and_another_tenant_none(
    server: ServerProcess,
) -> None:
    account, keys = new_tenant(server, "usage-a")
    lam = client(server, credentials=keys)
    deploy(lam, "steps", {"handler.py": STEPS})
    done, _ = start(lam, {})
    assert final(lam, done)["Status"] == "SUCCEEDED"
    parked, _ = start(lam, {"gate": True}, sync=False)
    callback_id(lam, parked, parked=True)

    status, mine = usage(server, account, keys)
    assert status == 200, mine
    assert (mine["accountId"], mine["functions"], mine["versions"]) == (account, 1, 0)
    assert mine["codeBytes"] > 0
    _, repos = v1(server, "GET", "/v1/repos", credentials=keys)
    assert mine["repositories"] == len(repos["repositories"])  # a deploy may make one
    assert (mine["facets"], mine["facetBytes"]) == (0, 0)
    runs = mine["executions"]
    assert runs["byStatus"]["SUCCEEDED"] == 1 and runs["byStatus"]["RUNNING"] == 1
    # Parked on its callback: waiting, not holding an invocation.
    assert (runs["running"], runs["waiting"], runs["queued"]) == (0, 1, 0)
    # A sliding-window estimate over two minute buckets (domain/usage.py): exact when
    # both starts fall in the current minute, and the earlier one only partly counted
    # when they straddle a minute's turn (a CI run met that).
    assert 1 <= runs["startsLastMinute"] <= 2

    status, seen = usage(server, account, server.credentials(ADMIN))
    assert status == 200 and seen["executions"]["byStatus"] == runs["byStatus"]

    # The attacker: another tenant's valid key, on A's usage and on A's tenant record.
    other, their_keys = new_tenant(server, "usage-b")
    for path in (f"/v1/tenants/{account}/usage", f"/v1/tenants/{account}"):
        status, body = v1(server, "GET", path, credentials=their_keys)
        assert status == 403 and body["error"]["code"] == "AccessDeniedException"
    status, theirs = usage(server, other, their_keys)
    assert status == 200 and theirs["functions"] == 0
    assert sum(theirs["executions"]["byStatus"].values()) == 0

    status, body = usage(server, "999999999999", server.credentials(ADMIN))
    assert status == 404 and body["error"]["code"] == "ResourceNotFoundException"


@pytest.mark.slow
def test_usage_survives_a_kill_9_and_the_replay_after_it_does_not_count_twice(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data)
    first.start()
    try:
        account, keys = new_tenant(first, "usage-kill")
        lam = client(first, credentials=keys)
        deploy(lam, "steps", {"handler.py": STEPS})
        arn, _ = start(lam, {"gate": True}, sync=False)
        gate = callback_id(lam, arn, parked=True)
        status, before = usage(first, account, keys)
        assert status == 200
    finally:
        first.kill()
        if first.proc is not None and first.proc.stdout is not None:
            first.proc.stdout.close()
    second = ServerProcess(data)
    second.start()
    try:
        lam = client(second, credentials=keys)
        status, after = usage(second, account, keys)
        assert after["executions"]["byStatus"] == before["executions"]["byStatus"]
        assert after["executions"]["waiting"] == 1
        lam.send_durable_execution_callback_success(CallbackId=gate, Result=b'"go"')
        assert final(lam, arn)["Status"] == "SUCCEEDED"
        _, closed = usage(second, account, keys)
        counts = closed["executions"]
        assert (counts["byStatus"]["RUNNING"], counts["byStatus"]["SUCCEEDED"]) == (0, 1)
        assert (counts["running"], counts["waiting"]) == (0, 0)
    finally:
        second.stop()


def _inventory(server: ServerProcess, query: str, keys: tuple[str, str]) -> tuple[int, Any]:
    return v1(server, "GET", f"/v1/admin/inventory?{query}", credentials=keys)


def test_the_admin_pages_the_inventory_with_last_uses_and_tenants_may_not(
    server: ServerProcess, tmp_path: Path
) -> None:
    account, keys = new_tenant(server, "inventory")
    lam = client(server, credentials=keys)
    deploy(lam, "steps", {"handler.py": STEPS})
    arn, _ = start(lam, {})
    assert final(lam, arn)["Status"] == "SUCCEEDED"
    status, _ = v1(server, "POST", "/v1/repos", {"name": "site"}, credentials=keys)
    assert status == 201
    status, _ = v1(server, "POST", "/v1/facets/notes", credentials=keys)
    assert status == 200
    # A push: Git's receive-pack over smart HTTP, with the tenant's key.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "T",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    host = server.url.split("://", 1)[1]
    url = f"http://{keys[0]}:{keys[1]}@{host}/git/{account}/site.git"
    work = tmp_path / "work"
    for args in (
        ["init", "-q", str(work)],
        ["-C", str(work), "commit", "-q", "--allow-empty", "-m", "first"],
        ["-C", str(work), "push", "-q", url, "HEAD:refs/heads/main"],
    ):
        subprocess.run(["git", *args], env=env, check=True, capture_output=True, timeout=60)

    admin = server.credentials(ADMIN)
    status, body = _inventory(server, f"tenant={account}&limit=1000", admin)
    assert status == 200, body
    assert body["nextMarker"] is None
    found = {(r["kind"], r["id"]): r for r in body["resources"]}
    version = found[("functionVersion", "steps:$LATEST")]
    assert version["sizeBytes"] > 0 and version["lastUsed"] >= version["createdAt"]
    assert found[("repository", "site")]["lastUsed"] is not None  # the push
    assert found[("facet", "notes")]["lastUsed"] is not None  # the open
    run = found[("execution", arn)]
    assert run["sizeBytes"] > 0 and run["lastUsed"] >= run["createdAt"]
    assert {r["accountId"] for r in body["resources"]} == {account}

    # Page by page, each resource once.
    seen: list[Any] = []
    marker = ""
    while True:
        status, page = _inventory(server, f"tenant={account}&limit=1{marker}", admin)
        assert status == 200 and len(page["resources"]) <= 1
        seen.extend(page["resources"])
        if page["nextMarker"] is None:
            break
        marker = f"&marker={page['nextMarker']}"
    assert seen == body["resources"]
    status, idle = _inventory(server, f"tenant={account}&idleDays=1", admin)
    assert status == 200 and idle["resources"] == []  # everything was just made or used

    status, body = _inventory(server, f"tenant={account}", keys)  # a tenant: never
    assert status == 403 and body["error"]["code"] == "AccessDeniedException"
    for query, word in (
        ("kind=tables", "kind"),
        ("idleDays=-1", "idleDays"),
        ("tenant=12", "tenant"),
        ("marker=zz", "marker"),
    ):
        status, body = _inventory(server, query, admin)
        assert status == 400 and word in body["error"]["message"], body  # fmt: skip
