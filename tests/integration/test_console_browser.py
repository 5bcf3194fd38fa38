"""The console in a real headless Chromium (Debian's, driven by Playwright): log in, run
a workflow with a callback, answer it from the page, watch the page follow it to
SUCCEEDED by itself, read its timeline; then the admin's tenants page. Screenshots go
to output/screenshots/ (CI artifacts); with TREADLE_UPDATE_DOCS_IMAGES=1 the two the
README shows are copied to docs/images/ too."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.console import WORKFLOW
from support.server import ServerProcess, client, deploy, new_tenant

CHROMIUM = os.environ.get("TREADLE_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "output" / "screenshots"

pytestmark = [
    pytest.mark.xdist_group("console-browser"),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run does)",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("browser") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


def _login(page: Any, url: str, credentials: tuple[str, str]) -> None:
    page.goto(url + "/console/login")
    page.fill("input[name=access_key_id]", credentials[0])
    page.fill("input[name=secret]", credentials[1])
    page.click("button[type=submit]")


def _shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("TREADLE_UPDATE_DOCS_IMAGES") == "1":
        (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, ROOT / "docs" / "images" / name)
    return path


def test_a_user_answers_a_callback_from_the_page_and_watches_the_execution_complete(
    server: ServerProcess, browser: Any
) -> None:
    lam = client(server)
    deploy(lam, "approval", {"handler.py": WORKFLOW})
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    refused: list[str] = []  # what the CSP blocked: nothing may be
    page.on(
        "console", lambda msg: refused.append(msg.text) if "Content Security" in msg.text else None
    )
    _login(page, server.url, server.credentials())
    page.wait_for_url("**/console/executions")
    lam.invoke(
        FunctionName="approval",
        InvocationType="Event",
        DurableExecutionName="order-42",
        Payload=json.dumps({"who": "chromium"}),
    )
    page.reload()
    page.click("text=order-42")
    # The page refreshes itself until the callback appears (the workflow waits 1 s first).
    answer = page.locator("form.callback input[name=payload]")
    answer.wait_for(timeout=60_000)
    answer.fill('{"approved": true, "by": "chromium"}')
    page.click("text=Answer callback (success)")
    page.wait_for_selector("#status:has-text('SUCCEEDED')", timeout=60_000)
    assert "chromium" in page.inner_text("#result")
    timeline = page.locator("#timeline")
    assert timeline.locator("rect.bar").count() >= 4
    assert timeline.locator("rect.band").count() >= 2
    assert "callback approval" in (timeline.text_content() or "")
    assert "greeting chromium" in page.inner_text("#logs")
    _shot(page, "console-timeline.png")
    assert refused == []

    new_tenant(server, "acme")
    new_tenant(server, "globex", maxFunctions=20)
    page.click("text=Log out")
    page.wait_for_url("**/console/login")
    _login(page, server.url, server.credentials("treadle-admin"))
    page.wait_for_url("**/console/tenants")
    assert page.locator("#tenants tbody tr").count() == 3
    assert page.locator("text=globex").count() == 1
    _shot(page, "console-admin.png")
    assert refused == []
    context.close()


def _callback_id(lam: Any, arn: str) -> str | None:
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    for e in events:
        if e["EventType"] == "CallbackStarted":
            return str(e["CallbackStartedDetails"]["CallbackId"])
    return None


def test_the_list_follows_status_changes_live_and_usage_and_audit_pages_open(
    server: ServerProcess, browser: Any
) -> None:
    lam = client(server)
    deploy(lam, "live", {"handler.py": WORKFLOW})
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console", lambda msg: refused.append(msg.text) if "Content Security" in msg.text else None
    )
    _login(page, server.url, server.credentials())
    page.wait_for_url("**/console/executions")
    page.evaluate("window.notReloaded = true")  # gone if the page reloads
    out = lam.invoke(
        FunctionName="live",
        InvocationType="Event",
        DurableExecutionName="watched-1",
        Payload=json.dumps({"who": "live"}),
    )
    arn = str(out["DurableExecutionArn"])
    row = page.locator("#executions tbody tr", has_text="watched-1")
    row.locator(".status:has-text('RUNNING')").wait_for(timeout=30_000)
    callback = None
    for _ in range(300):
        callback = _callback_id(lam, arn)
        if callback:
            break
        page.wait_for_timeout(200)
    assert callback is not None
    lam.send_durable_execution_callback_success(CallbackId=callback, Result=b'{"ok": true}')
    row.locator(".status:has-text('SUCCEEDED')").wait_for(timeout=30_000)
    assert page.evaluate("window.notReloaded") is True
    assert int(page.get_attribute("#executions", "data-updates") or "0") >= 2
    _shot(page, "console-executions-live.png")

    page.click("header >> text=Usage")
    page.wait_for_url("**/console/usage")
    assert page.locator("#usage-executions .s-SUCCEEDED").count() == 1
    _shot(page, "console-usage.png")
    page.click("header >> text=Audit")
    page.wait_for_url("**/console/audit")
    assert page.locator("#audit tbody tr", has_text="CreateFunction").count() >= 1

    page.click("text=Log out")
    page.wait_for_url("**/console/login")
    _login(page, server.url, server.credentials("treadle-admin"))
    page.wait_for_url("**/console/tenants")
    page.click("header >> text=Usage")
    page.wait_for_url("**/console/admin/usage")
    assert page.locator("#usage-all tbody tr").count() >= 1
    page.click("header >> text=Audit")
    page.wait_for_url("**/console/admin/audit")
    page.fill("input[name=action]", "CreateFunction")
    page.click("text=Filter")
    page.wait_for_url("**action=CreateFunction**")
    rows = page.locator("#audit tbody tr")
    assert rows.count() >= 1
    assert all("CreateFunction" in t for t in rows.all_inner_texts())
    _shot(page, "console-audit.png")
    assert refused == []
    context.close()
