"""The console's client of the API: in-process calls as the session's principal."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from treadle.api.http import Response

STREAM = "/v1/executions/events"
STREAM_PAGE = 100

# Application.call_as, as the console uses it.
CallAs = Callable[..., Response]


class ApiError(Exception):
    """The API refused: its status and message, shown as is (404 stays 404)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def seg(value: str) -> str:
    """One path segment, percent-encoded whole (an ARN's `:` and `/` included)."""
    return quote(value, safe="")


class Api:
    def __init__(
        self, call_as: CallAs, tenant: str | None, key_id: str = "", source: str = ""
    ) -> None:
        self._call = call_as
        self.tenant = tenant
        # Who acts, for the audit log: the session's key and the browser's address.
        self._who = {"access_key_id": key_id, "source_address": source}

    def call(
        self,
        method: str,
        path: str,
        query: dict[str, str | list[str]] | None = None,
        body: Any = None,
        *,
        raw_body: bytes | None = None,
        target: str | None = None,
    ) -> Any:
        q = {k: v if isinstance(v, list) else [v] for k, v in (query or {}).items()}
        data = raw_body if raw_body is not None else (b"" if body is None else _dumps(body))
        response = self._call(
            self.tenant, method, path, query=q, body=data, target=target, **self._who
        )
        return _parse(response)

    def get(self, path: str, /, **query: str | list[str]) -> Any:
        return self.call("GET", path, {k: v for k, v in query.items() if v})

    def raw(self, path: str, /, **query: str) -> bytes:
        response = self._call(
            self.tenant, "GET", path, query={k: [v] for k, v in query.items()}, **self._who
        )
        if response.status >= 400:
            _parse(response)
        return response.body


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


def _parse(response: Response) -> Any:
    try:
        data = json.loads(response.body) if response.body else {}
    except ValueError:
        data = {}
    if response.status >= 400:
        message = _message(data) or f"HTTP {response.status}"
        code = response.headers.get("x-amzn-errortype")
        raise ApiError(response.status, f"{code}: {message}" if code else message)
    return data


def _message(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    if isinstance(error, dict):
        return f"{error.get('code', '')}: {error.get('message', '')}"
    return str(data.get("message") or data.get("Message") or "")


def tail_cursor(api: Api) -> str:
    """The cursor after the newest event kept: what a page rendered now listens from
    (taken before the page reads its data, so no change falls between the two)."""
    return str(api.get(STREAM, start="latest", limit="1")["nextCursor"])
