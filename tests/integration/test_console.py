"""The web console over HTTP against `treadle dev`: login, pages, actions, CSRF, and
what a tenant session must never reach (another tenant's things: 404; the admin's: 403)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.console import WORKFLOW, browser, csrf_of, execution_path, login, post_form
from support.server import ServerProcess, client, deploy, new_tenant, v1

pytestmark = pytest.mark.xdist_group("console")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("console") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def waiting(server: ServerProcess) -> str:
    """An execution of the workflow, parked on its callback."""
    lam = client(server)
    deploy(lam, "flow", {"handler.py": WORKFLOW})
    out = lam.invoke(
        FunctionName="flow",
        InvocationType="Event",
        DurableExecutionName="first",
        Payload=json.dumps({"who": "console"}),
    )
    arn = str(out["DurableExecutionArn"])
    _until(lambda: _callback_started(lam, arn))
    return arn


def _callback_started(lam: Any, arn: str) -> bool:
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    return any(e["EventType"] == "CallbackStarted" for e in events)


def _until(check: Any, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_the_console_asks_for_a_login_and_never_errors_with_a_stack_trace(
    server: ServerProcess,
) -> None:
    web = browser(server)
    assert web.get("/console/executions").headers["location"] == "/console/login"
    page = web.get("/console/login")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script anywhere
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie


def test_a_wrong_secret_is_refused_and_the_login_form_needs_its_csrf_token(
    server: ServerProcess,
) -> None:
    web = browser(server)
    form = web.get("/console/login").text
    key_id, _secret = server.credentials()
    wrong = web.post(
        "/console/login",
        data={"csrf": csrf_of(form), "access_key_id": key_id, "secret": "nope"},
    )
    assert wrong.status_code == 401 and "wrong secret" in wrong.text
    assert "set-cookie" not in wrong.headers or "treadle_console=" not in wrong.headers.get(
        "set-cookie", ""
    )
    forged = browser(server).post(
        "/console/login",
        data={"csrf": "forged", "access_key_id": key_id, "secret": server.credentials()[1]},
    )
    assert forged.status_code == 403


def test_a_session_cookie_is_http_only_strict_expiring_and_holds_no_secret(
    server: ServerProcess,
) -> None:
    key_id, secret = server.credentials()
    web = browser(server)
    form = web.get("/console/login").text
    made = web.post(
        "/console/login",
        data={"csrf": csrf_of(form), "access_key_id": key_id, "secret": secret},
        headers={"x-forwarded-proto": "https"},
    )
    cookie = made.headers["set-cookie"]
    assert made.status_code == 303 and made.headers["location"] == "/console/executions"
    for part in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=", "Secure"):
        assert part in cookie
    assert secret not in cookie
    assert secret not in web.get("/console/executions").text


def test_the_executions_page_lists_and_filters_and_the_execution_page_draws_a_timeline(
    server: ServerProcess, waiting: str
) -> None:
    web = login(server, server.credentials())
    listed = web.get("/console/executions").text
    assert "first" in listed and execution_path(waiting) in listed
    assert "first" not in web.get("/console/executions?status=SUCCEEDED").text
    assert "first" in web.get("/console/executions?function=flow&status=RUNNING").text
    assert "first" not in web.get("/console/executions?name=other").text
    bad = web.get("/console/executions?after=yesterday")
    assert bad.status_code == 400 and "Invalid timestamp" in bad.text
    page = web.get(execution_path(waiting))
    assert page.status_code == 200
    html = page.text
    assert '<svg class="timeline"' in html
    for label in ("step greet", "wait 1s", "context child", "callback approval"):
        assert label in html
    assert 'class="band"' in html  # the invocations behind the rows
    assert "Answer callback" in html
    assert "&#34;who&#34;: &#34;console&#34;" in html  # the decoded input
    assert "greeting console" in html  # its log lines
    assert 'data-live="' in html  # open: the page refreshes itself


def test_answering_the_callback_from_the_page_completes_the_execution(
    server: ServerProcess, waiting: str
) -> None:
    web = login(server, server.credentials())
    page = execution_path(waiting)
    html = web.get(page).text
    callback_id = html.split('name="callback_id" value="')[1].split('"')[0]
    bad = web.post(
        page + "/callback",
        data={"csrf": csrf_of(html), "callback_id": callback_id, "payload": "{not json"},
    )
    assert bad.status_code == 400 and "must be JSON" in bad.text
    done = web.post(
        page + "/callback",
        data={"csrf": csrf_of(html), "callback_id": callback_id, "payload": '{"ok": true}'},
    )
    assert done.status_code == 303
    _until(lambda: "SUCCEEDED" in web.get(page + "/live").text)
    final = web.get(page).text
    assert "data-live" not in final and "&#34;ok&#34;: true" in final


def test_a_post_without_the_sessions_csrf_token_is_refused(
    server: ServerProcess, waiting: str
) -> None:
    web = login(server, server.credentials())
    page = execution_path(waiting)
    assert web.post(page + "/stop").status_code == 403
    assert web.post(page + "/stop", data={"csrf": "guess"}).status_code == 403
    other = login(server, server.credentials())  # another session's token is no good
    token = csrf_of(other.get("/console/executions").text)
    assert web.post(page + "/stop", data={"csrf": token}).status_code == 403


def test_logout_ends_the_session(server: ServerProcess) -> None:
    web = login(server, server.credentials())
    out = post_form(web, "/console/executions", "/console/logout")
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    web.cookies.clear()
    assert web.get("/console/executions").status_code == 303


def test_a_tenant_session_sees_nothing_of_another_tenant_and_no_admin_page(
    server: ServerProcess, waiting: str
) -> None:
    _account, attacker_keys = new_tenant(server, "attacker")
    web = login(server, attacker_keys)
    assert "first" not in web.get("/console/executions").text
    assert web.get(execution_path(waiting)).status_code == 404
    assert web.get(execution_path(waiting) + "/live").status_code == 404
    stop = post_form(web, "/console/executions", execution_path(waiting) + "/stop")
    assert stop.status_code == 404
    assert web.get("/console/functions/flow").status_code == 404
    assert web.get("/console/repos/functions").status_code == 404
    assert web.get("/console/tenants").status_code == 403
    forged = post_form(web, "/console/executions", "/console/tenants/000000000000/disable")
    assert forged.status_code == 403


def test_the_admin_sees_tenants_and_disabling_one_logs_its_sessions_out(
    server: ServerProcess,
) -> None:
    account, keys = new_tenant(server, "victim")
    tenant_web = login(server, keys)
    assert tenant_web.get("/console/executions").status_code == 200
    admin = login(server, server.credentials("treadle-admin"))
    listing = admin.get("/console/tenants")
    assert listing.status_code == 200 and account in listing.text
    assert admin.get("/console/executions").status_code == 403  # a tenant's page
    quotas = post_form(
        admin, "/console/tenants", f"/console/tenants/{account}/quotas", maxFunctions="7"
    )
    assert quotas.status_code == 303
    assert 'name="maxFunctions" value="7"' in admin.get("/console/tenants").text
    off = post_form(admin, "/console/tenants", f"/console/tenants/{account}/disable")
    assert off.status_code == 303
    assert tenant_web.get("/console/executions").headers["location"] == "/console/login"
    post_form(admin, "/console/tenants", f"/console/tenants/{account}/enable")
    assert tenant_web.get("/console/executions").status_code == 200


def test_functions_versions_and_repositories_render_with_their_commits(
    server: ServerProcess, waiting: str
) -> None:
    web = login(server, server.credentials())
    assert "flow" in web.get("/console/functions").text
    versions = web.get("/console/functions/flow")
    assert versions.status_code == 200 and "$LATEST" in versions.text
    assert "/console/repos/functions/log?ref=" in versions.text  # the version's commit
    repos = web.get("/console/repos").text
    assert "/console/repos/functions" in repos
    tree = web.get("/console/repos/functions")
    assert tree.status_code == 200 and "path=functions" in tree.text
    inner = web.get("/console/repos/functions?path=functions/flow").text
    assert "handler.py" in inner
    blob = web.get("/console/repos/functions/blob?path=functions/flow/handler.py")
    assert blob.status_code == 200 and "wait_for_callback" in blob.text
    assert web.get("/console/repos/functions/log").status_code == 200
    assert web.get("/console/facets").status_code == 200


def test_static_assets_are_served_and_nothing_else_is(server: ServerProcess) -> None:
    web = browser(server)
    assert web.get("/console/static/console.js").status_code == 200
    assert web.get("/console/static/%2e%2e%2fsession.py").status_code == 404
    assert web.get("/console/static/session.py").status_code == 404


def test_pause_resume_event_stop_and_redrive_from_the_page(
    server: ServerProcess, waiting: str
) -> None:
    lam = client(server)
    out = lam.invoke(
        FunctionName="flow",
        InvocationType="Event",
        DurableExecutionName="actions",
        Payload=json.dumps({"who": "actions"}),
    )
    arn = str(out["DurableExecutionArn"])
    _until(lambda: _callback_started(lam, arn))
    web = login(server, server.credentials())
    page = execution_path(arn)

    def status() -> str:
        return str(lam.get_durable_execution(DurableExecutionArn=arn)["Status"])

    for action, expected in (("pause", "PAUSED"), ("resume", "RUNNING")):
        done = post_form(web, page, f"{page}/{action}")
        assert done.status_code == 303 and done.headers["location"].endswith(f"done={action}")
        _until(lambda expected=expected: status() == expected)  # type: ignore[misc]
    sent = post_form(web, page, f"{page}/event", type="nudge", payload='{"n": 1}')
    assert sent.status_code == 303
    refused = post_form(web, page, f"{page}/event", type="bad type!", payload="")
    assert refused.status_code == 400 and "type" in refused.text
    assert post_form(web, page, f"{page}/stop").status_code == 303
    _until(lambda: status() == "STOPPED")
    no_step = post_form(web, page, f"{page}/redrive")
    assert no_step.status_code == 400 and "no failed step" in no_step.text
    redriven = post_form(web, page, f"{page}/redrive", step="greet")
    assert redriven.status_code == 303, redriven.text
    assert "done=redriven" in redriven.headers["location"]
    new_page = redriven.headers["location"].split("?")[0]
    assert new_page != page
    assert web.get(new_page).status_code == 200
    assert "Redriven from" in web.get(new_page).text
    # The page's actions are audited like the API's: the session's key, the browser's address.
    status_, body = v1(server, "GET", "/v1/audit?limit=50", credentials=server.credentials())
    assert status_ == 200, body
    mine = [r for r in body["records"] if r["resource"] == arn]
    assert {r["action"] for r in mine} >= {"PauseExecution", "ResumeExecution", "StopExecution"}
    for record in mine:
        assert record["accessKeyId"] == server.credentials()[0]
        assert record["principal"] == "tenant-key"
        assert record["sourceAddress"] == "127.0.0.1"
        assert record["outcome"] == "succeeded"
