"""The console's HTTP layer: sessions, CSRF, security headers, routing to pages.

Pages (`pages.py`, `admin_pages.py`) get their data from the API itself, in process
(`Application.call_as`), so what a session may see and do is exactly what its key may
do on the API. The console adds one rule of its own: the admin's pages are the admin's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from jinja2 import Environment, PackageLoader, select_autoescape

from treadle.api.http import Request, Response
from treadle.console.session import (
    COOKIE,
    LOGIN_COOKIE,
    LOGIN_MAX_AGE_S,
    MAX_AGE_S,
    Session,
    Sessions,
    cookie_header,
    csrf_ok,
    read_cookie,
)

PREFIX = "/console"
# No inline script or style at all: the one script and the stylesheet are served from
# /console/static, so 'self' is the whole policy (no nonce needed).
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


@dataclass
class Ctx:
    """One console request: the session, the form of a POST, the path parameters."""

    request: Request
    session: Session
    form: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def q(self, name: str) -> str:
        return (self.request.q(name) or "").strip()


Page = Callable[[Ctx], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    page: Page
    admin: bool  # True: the admin's only; False: tenants' only


class Forbidden(Exception):
    pass


class Console:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.routes: list[Route] = []
        self.env = Environment(
            loader=PackageLoader("treadle.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.env.filters["q"] = lambda value: quote(str(value), safe="")

    def add(self, method: str, template: str, page: Page, *, admin: bool = False) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append(Route(method, re.compile(f"^{pattern}/?$"), page, admin))

    def render(self, ctx: Ctx | None, template: str, status: int = 200, **data: Any) -> Response:
        session = ctx.session if ctx is not None else None
        body = self.env.get_template(template).render(session=session, **data)
        return _html(body, status)

    def __call__(self, request: Request) -> Response:
        response = self._handle(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def _handle(self, request: Request) -> Response:
        path = request.path[len(PREFIX) :] or "/"
        if path.startswith("/static/"):
            return _static(path[len("/static/") :])
        if path.rstrip("/") == "/login":
            return self._login(request)
        session = self.sessions.principal(read_cookie(request.header("cookie"), COOKIE))
        if path.rstrip("/") == "/logout" and request.method == "POST":
            return self._logout(request, session)
        if session is None:
            if request.method == "GET":
                return redirect(f"{PREFIX}/login")
            return _text(403, "Your session has ended: log in again.")
        if path == "/":
            return redirect(f"{PREFIX}/tenants" if session.admin else f"{PREFIX}/executions")
        form: dict[str, str] = {}
        if request.method == "POST":
            form = _form(request.body)
            if not csrf_ok(session, form.get("csrf")):
                return _text(403, "The form's CSRF token is missing or wrong: reload the page.")
        known = False
        for route in self.routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            known = True
            if route.method != request.method:
                continue
            if route.admin != session.admin:
                who = "the platform admin" if route.admin else "a tenant's key"
                return self.render(None, "error.html", 403, message=f"This page needs {who}.")
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            ctx = Ctx(request, session, form, params)
            try:
                return route.page(ctx)
            except Forbidden as exc:
                return self.render(ctx, "error.html", 403, message=str(exc))
        if known:
            return _text(405, "Method not allowed.")
        return self.render(None, "error.html", 404, message="No such page.")

    def _login(self, request: Request) -> Response:
        secure = is_https(request)
        if request.method == "POST":
            form = _form(request.body)
            cookie = read_cookie(request.header("cookie"), LOGIN_COOKIE)
            if not self.sessions.login_token_ok(cookie, form.get("csrf", "")):
                return _text(403, "The login form expired or came from elsewhere: reload it.")
            made = self.sessions.login(form.get("access_key_id", ""), form.get("secret", ""))
            if made is None:
                return self._login_form(secure, "Unknown key, wrong secret, or key disabled.")
            session, value = made
            target = f"{PREFIX}/tenants" if session.admin else f"{PREFIX}/executions"
            response = redirect(target)
            response.headers["set-cookie"] = cookie_header(
                COOKIE, value, secure=secure, max_age=MAX_AGE_S
            )
            return response
        if request.method != "GET":
            return _text(405, "Method not allowed.")
        return self._login_form(secure, None)

    def _login_form(self, secure: bool, error: str | None) -> Response:
        token, signed = self.sessions.login_token()
        body = self.env.get_template("login.html").render(csrf=token, error=error, session=None)
        response = _html(body, 401 if error else 200)
        response.headers["set-cookie"] = cookie_header(
            LOGIN_COOKIE, signed, secure=secure, max_age=LOGIN_MAX_AGE_S
        )
        return response

    def _logout(self, request: Request, session: Session | None) -> Response:
        if session is not None and not csrf_ok(session, _form(request.body).get("csrf")):
            return _text(403, "The form's CSRF token is missing or wrong: reload the page.")
        response = redirect(f"{PREFIX}/login")
        response.headers["set-cookie"] = cookie_header(
            COOKIE, "", secure=is_https(request), max_age=0
        )
        return response


def is_https(request: Request) -> bool:
    """Behind API Gateway or a TLS proxy the scheme arrives as X-Forwarded-Proto."""
    return (request.header("x-forwarded-proto") or "").lower() == "https"


def redirect(location: str) -> Response:
    # 303: after a POST the browser GETs the target (no resubmission on reload).
    return Response(status=303, headers={"location": location})


def _html(body: str, status: int = 200) -> Response:
    return Response(status, body.encode(), {"content-type": "text/html; charset=utf-8"})


def _text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode(), {"content-type": "text/plain"})


def _form(body: bytes) -> dict[str, str]:
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _static(name: str) -> Response:
    kind = _STATIC.get(name)
    if kind is None:
        return _text(404, "Not found.")
    data = resources.files("treadle.console").joinpath("static", name).read_bytes()
    return Response(200, data, {"content-type": kind, "cache-control": "max-age=300"})
