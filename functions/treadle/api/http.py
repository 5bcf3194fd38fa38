"""Framework-free HTTP core: the same application behind uvicorn and API Gateway.

Routes match the *raw* path: AWS clients percent-encode a whole ARN into one path
segment (`:` and `/` included), so the path must be split before it is decoded —
which framework routers (that decode first) get wrong. That is why this small router
is written here rather than taken from a web framework.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote


@dataclass
class Request:
    method: str
    path: str  # raw, still percent-encoded
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    tenant: str = ""
    # Who the verified credential is (set by `auth.Authenticator`) and where the request
    # came from (set by the server or the Lambda entrypoint): what the audit log records.
    access_key_id: str = ""
    principal_kind: str = ""
    source_address: str = ""

    @classmethod
    def build(
        cls, method: str, raw_path: str, query_string: str, headers: dict[str, str], body: bytes
    ) -> Request:
        return cls(
            method=method.upper(),
            path=raw_path,
            query=parse_qs(query_string, keep_blank_values=True),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
        )

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def limit(self, default: int, maximum: int = 1000) -> int:
        """The `limit` query parameter of a /v1 listing: absent is `default`; present, it
        must be an integer from 1 to `maximum` (empty is not absent: a client bug)."""
        from treadle.domain.errors import InvalidParameter

        raw = self.q("limit")
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise InvalidParameter(f"limit must be an integer from 1 to {maximum}, not {raw!r}.")
        return int(raw)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        from treadle.domain.errors import InvalidParameter

        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidParameter("Could not parse request body into json.") from None


REQUEST_ID_HEADER = "x-amzn-requestid"


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(data, separators=(",", ":")).encode()
        h = {"content-type": "application/json"}
        h.update(headers or {})
        return cls(status=status, body=body, headers=h)


Handler = Callable[[Request], Response]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._templates: list[tuple[str, str]] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        """`template` like `/2025-12-01/durable-executions/{Arn}/state`."""
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self._routes.append((method, re.compile(f"^{pattern}/?$"), handler))
        self._templates.append((method, template))

    def routes(self) -> list[tuple[str, str]]:
        """(method, template) of every route, in the order they were added."""
        return list(self._templates)

    def match(self, request: Request) -> tuple[Handler | None, bool]:
        """(handler, path_known): path_known tells 405 from 404."""
        known = False
        for method, pattern, handler in self._routes:
            m = pattern.match(request.path)
            if m is None:
                continue
            known = True
            if method == request.method:
                request.params = {k: unquote(v) for k, v in m.groupdict().items()}
                return handler, True
        return None, known
