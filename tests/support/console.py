"""Driving the web console over HTTP as a browser would: httpx with a cookie jar."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx

from support.server import ServerProcess

WORKFLOW = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration


@durable_step
def greet(step_ctx, who):
    print("greeting", who)
    return {"hello": who}


@durable_execution
def handler(event, context: DurableContext):
    greeting = context.step(greet(event.get("who", "world")))
    context.wait(Duration.from_seconds(1))
    inner = context.run_in_child_context(lambda ctx: ctx.step(greet("child")), name="child")
    approval = context.wait_for_callback(lambda cid, ctx: print("callback", cid), name="approval")
    return {"greeting": greeting, "inner": inner, "approval": approval}
"""

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def browser(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=60)


def login(server: ServerProcess, credentials: tuple[str, str]) -> httpx.Client:
    """A client holding a console session for `credentials`."""
    web = browser(server)
    form = web.get("/console/login")
    assert form.status_code == 200, form.text
    made = web.post(
        "/console/login",
        data={
            "csrf": csrf_of(form.text),
            "access_key_id": credentials[0],
            "secret": credentials[1],
        },
    )
    assert made.status_code == 303, made.text
    return web


def execution_path(arn: str) -> str:
    return f"/console/executions/{quote(arn, safe='')}"


def post_form(web: httpx.Client, page: str, action: str, **fields: Any) -> httpx.Response:
    """Submit a form the way the page would: with the session's CSRF token."""
    html = web.get(page).text
    return web.post(action, data={"csrf": csrf_of(html), **fields})
