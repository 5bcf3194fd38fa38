"""The console's live feed, usage and audit pages over HTTP against `treadle dev`: what
each principal sees, and what another tenant never does."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.console import execution_path, login, post_form
from support.server import ServerProcess, client, deploy, new_tenant
from support.workflows import WORKFLOW

pytestmark = pytest.mark.xdist_group("console")
DEFAULT_TENANT = "123456789012"
_CURSOR = re.compile(r'data-cursor="([^"]*)"')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("console-ops") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _cursor(html: str) -> str:
    found = _CURSOR.search(html)
    assert found is not None, "the page carries no cursor"
    return found.group(1)


def _changes(web: httpx.Client, cursor: str, arn: str, want: str) -> list[dict[str, Any]]:
    """Long-poll the feed until `arn` reports `want` (each call is held by the server)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while not any(c["arn"] == arn and c["status"] == want for c in seen):
        assert time.monotonic() < deadline, seen
        out = web.get("/console/events", params={"cursor": cursor})
        assert out.status_code == 200 and out.headers["content-type"] == "application/json"
        body = out.json()
        seen += body["changes"]
        cursor = body["cursor"]
    return seen


def test_the_feed_reports_status_changes_after_the_pages_cursor_and_only_the_tenants_own(
    server: ServerProcess,
) -> None:
    web = login(server, server.credentials())
    _account, other_keys = new_tenant(server, "neighbour")
    other = login(server, other_keys)
    listing = web.get("/console/executions")
    assert '<script src="/console/static/console.js">' in listing.text
    cursor, other_cursor = _cursor(listing.text), _cursor(other.get("/console/executions").text)

    lam = client(server)
    deploy(lam, "fed", {"handler.py": WORKFLOW})
    out = lam.invoke(FunctionName="fed", Payload=json.dumps({"n": 1}), DurableExecutionName="f1")
    arn = out["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    seen = _changes(web, cursor, arn, "SUCCEEDED")
    mine = [c for c in seen if c["arn"] == arn]
    assert [c["status"] for c in mine] == ["RUNNING", "SUCCEEDED"]
    assert mine[0]["name"] == "f1" and mine[1]["previousStatus"] == "RUNNING"

    # The neighbour's feed, read from its own page's cursor, says nothing of it. (Not
    # held: the changes are already in the stream; holding would only wait 15 s.)
    held = other.get("/console/events", params={"cursor": other_cursor, "wait": "0"}).json()
    assert held["changes"] == []
    # The page rendered now listens from after those changes (none is replayed).
    now = _cursor(web.get("/console/executions").text)
    assert now != cursor
    caught_up = web.get("/console/events", params={"cursor": now, "wait": "0"}).json()
    assert caught_up["changes"] == []
    # A held read ends when it is told to.
    started = time.monotonic()
    assert web.get("/console/events", params={"cursor": now, "wait": "1"}).json()["changes"] == []
    assert 0.9 <= time.monotonic() - started < 10
    for bad in ("16", "-1", "soon"):
        out = web.get("/console/events", params={"cursor": now, "wait": bad})
        assert out.status_code == 400 and "wait must be" in out.json()["message"], bad
    assert "data-cursor" not in web.get(execution_path(arn)).text  # closed: nothing to hear


def test_a_forged_cursor_is_a_precise_400_not_a_stack_trace(server: ServerProcess) -> None:
    web = login(server, server.credentials())
    out = web.get("/console/events", params={"cursor": "not-a-cursor"})
    assert out.status_code == 400 and "cursor" in out.json()["message"].lower()
    assert "Traceback" not in out.text


def test_the_feed_is_for_tenants_and_needs_a_session(server: ServerProcess) -> None:
    admin = login(server, server.credentials("treadle-admin"))
    assert admin.get("/console/events").status_code == 403
    anonymous = httpx.Client(base_url=server.url, follow_redirects=False)
    assert anonymous.get("/console/events").headers["location"] == "/console/login"


def test_a_tenant_sees_its_own_usage_and_never_another_tenants(server: ServerProcess) -> None:
    web = login(server, server.credentials())
    page = web.get("/console/usage")
    assert page.status_code == 200 and f"account {DEFAULT_TENANT}" in page.text
    assert 'id="usage-executions"' in page.text and "s-SUCCEEDED" in page.text
    account, _keys = new_tenant(server, "private")
    assert web.get(f"/console/tenants/{account}/usage").status_code == 403  # the admin's page
    assert web.get("/console/admin/usage").status_code == 403


def test_the_admin_reads_every_tenants_usage_from_the_tenants_page(
    server: ServerProcess,
) -> None:
    account, _keys = new_tenant(server, "measured")
    admin = login(server, server.credentials("treadle-admin"))
    tenants = admin.get("/console/tenants").text
    assert f"/console/tenants/{account}/usage" in tenants
    one = admin.get(f"/console/tenants/{account}/usage")
    assert one.status_code == 200 and f"account {account}" in one.text
    every = admin.get("/console/admin/usage")
    assert every.status_code == 200 and account in every.text and DEFAULT_TENANT in every.text
    missing = admin.get("/console/tenants/999999999999/usage")
    assert missing.status_code == 404


def test_the_audit_pages_show_a_tenant_its_own_records_and_the_admin_filters_them(
    server: ServerProcess,
) -> None:
    account, keys = new_tenant(server, "audited")
    web = login(server, keys)
    lam = client(server, credentials=keys)
    deploy(lam, "audited-fn", {"handler.py": WORKFLOW})
    own = web.get("/console/audit")
    assert own.status_code == 200 and "CreateFunction" in own.text
    assert "audited-fn" in own.text
    # Another tenant's page shows none of it.
    assert "audited-fn" not in login(server, server.credentials()).get("/console/audit").text
    assert web.get("/console/admin/audit").status_code == 403

    admin = login(server, server.credentials("treadle-admin"))
    filtered = admin.get("/console/admin/audit", params={"tenant": account})
    assert filtered.status_code == 200 and "audited-fn" in filtered.text
    rows = re.findall(r'\?tenant=(\d{12})"><code>', filtered.text)
    assert rows and set(rows) == {account}
    by_action = admin.get("/console/admin/audit", params={"action": "CreateTenant"}).text
    assert "CreateTenant" in by_action and "CreateFunction" not in by_action
    bad = admin.get("/console/admin/audit", params={"tenant": "abc"})
    assert bad.status_code == 400 and "12-digit" in bad.text


def test_the_audit_page_pages_with_the_filters_kept(server: ServerProcess) -> None:
    account, keys = new_tenant(server, "busy")
    lam = client(server, credentials=keys)
    for n in range(3):
        deploy(lam, f"busy-{n}", {"handler.py": WORKFLOW})
    admin = login(server, server.credentials("treadle-admin"))
    seen: list[str] = []
    url: str | None = f"/console/admin/audit?tenant={account}&action=CreateFunction&limit=2"
    pages = 0
    while url:
        html = admin.get(url.replace("&amp;", "&")).text
        seen += re.findall(r"<code>arn:aws:lambda:[^:]+:\d+:function:(busy-\d)</code>", html)
        older = re.search(r'id="older" href="([^"]+)"', html)
        url = older.group(1) if older else None
        pages += 1
        assert pages < 10
    assert sorted(seen) == ["busy-0", "busy-1", "busy-2"] and pages == 2


def test_the_usage_and_audit_links_replace_the_placeholders(server: ServerProcess) -> None:
    web = login(server, server.credentials())
    page = web.get("/console/executions").text
    assert 'href="/console/usage"' in page and 'href="/console/audit"' in page
    assert "comes with the supervisor" not in page
    stop = post_form(web, "/console/executions", "/console/executions/x/stop")
    assert stop.status_code in (400, 404)
