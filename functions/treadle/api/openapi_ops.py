"""What each `/v1` area declares about its routes for the OpenAPI document.

Every `api/v1_*.py` exports `OPERATIONS: list[Op]` beside its request and response
models; `api/openapi.py` assembles them. This module imports no area, so an area can
import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from treadle.app.executions import EXECUTION_ARN_PATTERN
from treadle.domain.schedules import NAME_PATTERN as SCHEDULE_PATTERN
from treadle.facets.models import NAME_PATTERN as FACET_PATTERN

Schema = dict[str, Any]


class ErrorDetail(BaseModel):
    code: str
    message: str
    retryable: bool


class ErrorOut(BaseModel):
    error: ErrorDetail


@dataclass(frozen=True)
class Op:
    """One route. `errors`: the statuses its own checks answer, beyond `AUTH_ERRORS`
    (which every authenticated route may answer)."""

    method: str
    path: str
    summary: str
    ok: int = 200
    response: type[BaseModel] | None = None  # None: no body (204), or raw bytes (`raw`)
    body: type[BaseModel] | None = None
    query: dict[str, Schema] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    admin: bool = False
    raw: bool = False
    public: bool = False  # no credentials, no error responses
    description: str | None = None


# Every status a /v1 answer can have, as `api/errors.py` classifies the errors.
STATUS_TEXT = {
    400: "Invalid request: unparsable JSON, a parameter out of its range, or a malformed signature",
    401: "Wrong HTTP Basic credentials",
    402: "A tenant quota (a count or a size) would be exceeded",
    403: "Missing credentials, a bad signature, or this principal may not call this operation",
    404: "No such resource (or another tenant's)",
    409: "The resource's state forbids the request",
    413: "Request too large",
    429: "Throttled: a rate or a buffer is full; retry after a while",
    500: "An internal or transient failure (`retryable`: true)",
}
AUTH_ERRORS = (400, 401, 403, 413, 500)

LIMIT: dict[str, Schema] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    "marker": {"type": "string"},
}

NAME = {"type": "string", "pattern": r"^[a-zA-Z0-9_-]{1,64}$"}
# Path parameters by name: an area's path names `{Repo}`, the document describes it.
PATH_PARAMS: dict[str, Schema] = {
    "Account": {"type": "string", "pattern": r"^\d{12}$"},
    "Repo": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,100}$"},
    "KeyId": {"type": "string", "pattern": r"^[A-Z0-9]{16,128}$"},
    "Name": NAME,
    "ExecutionName": NAME,
    "Facet": {"type": "string", "pattern": "^" + FACET_PATTERN + "$"},
    "Schedule": {"type": "string", "pattern": SCHEDULE_PATTERN},
    "WebhookId": {"type": "string", "pattern": r"^wh_[0-9a-f]{24}$"},
    "TokenId": {"type": "string", "pattern": r"^rt[0-9a-f]{24}$"},
    "Arn": {
        "type": "string",
        "pattern": EXECUTION_ARN_PATTERN,
        "description": "A durable execution ARN (`DurableExecutionArn`), percent-encoded "
        "as ONE path segment: `:` as %3A, `/` as %2F, `$` as %24 (as AWS SDKs send it).",
        "examples": [
            "arn:aws:lambda:us-east-1:000000000000:function:orders:$LATEST"
            "/durable-execution/order-1/5f0c8a1e2b3d4c5e"
        ],
    },
}
