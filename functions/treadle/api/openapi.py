"""The OpenAPI 3.1 document of `/v1`, assembled from the areas' own operation lists.

Each area (`api/v1_<area>.py`) declares `OPERATIONS` beside the pydantic models its
routes validate requests with and build responses from, so the document cannot drift
from what is served; `AREAS` lists them and `build_document` is the one entry point.
`tests/unit/test_openapi_routes.py` fails when a route is registered but not here (or
the other way round); `tests/integration/test_openapi.py` runs schemathesis against a
live server to check every answer against the document.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from treadle.api import (
    v1_audit,
    v1_executions,
    v1_facets,
    v1_functions,
    v1_gc,
    v1_inventory,
    v1_notifications,
    v1_repos,
    v1_schedules,
    v1_tenants,
    v1_usage,
)
from treadle.api.openapi_ops import AUTH_ERRORS, PATH_PARAMS, STATUS_TEXT, ErrorOut, Op

__all__ = ["AREAS", "Op", "build_document", "operations"]


class Health(BaseModel):
    status: str


class DocumentOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


PLATFORM = [
    Op("get", "/v1/health", "Liveness", response=Health, public=True),
    Op("get", "/v1/openapi.json", "This document", response=DocumentOut, public=True),
]

# One list per area, in the document's order. A new area: its module's OPERATIONS here.
AREAS: tuple[list[Op], ...] = (
    PLATFORM,
    v1_tenants.OPERATIONS,
    v1_facets.OPERATIONS,
    v1_repos.OPERATIONS,
    v1_functions.OPERATIONS,
    v1_executions.OPERATIONS,
    v1_schedules.OPERATIONS,
    v1_notifications.OPERATIONS,
    v1_usage.OPERATIONS,
    v1_inventory.OPERATIONS,
    v1_audit.OPERATIONS,
    v1_gc.OPERATIONS,
)


def operations() -> list[Op]:
    return [op for area in AREAS for op in area]


def build_document(extra: list[Op] | None = None) -> dict[str, Any]:
    ops = operations() + (extra or [])
    models: set[type[BaseModel]] = {ErrorOut}
    for op in ops:
        models.update(m for m in (op.response, op.body) if m is not None)
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        if op.method in paths.get(op.path, {}):  # an area copied another's block
            raise ValueError(f"{op.method.upper()} {op.path} is declared twice")
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Treadle platform API (/v1)",
            "version": "1",
            "description": "Tenants (admin), Git repositories, facets, deployments, events "
            "to executions, redrives, batch starts, schedules, status-change events and "
            "webhooks. The Lambda-compatible surface is "
            "documented by AWS; Git is smart HTTP under /git. Errors are "
            '`{"error": {"code", "message", "retryable"}}`.',
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "responses": {f"Error{s}": _error(s, text) for s, text in STATUS_TEXT.items()},
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic",
                          "description": "Access key id : secret access key"},
                "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "AWS Signature Version 4, as boto3 signs"},
            },
        },
    }  # fmt: skip


def _operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(op)}
    described = [op.description] if op.description else []
    if op.admin:
        described.append("Platform admin credential only.")
    if described:
        out["description"] = " ".join(described)
    params = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in PATH_PARAMS.items()
        if "{" + name + "}" in op.path
    ]
    params += [{"name": n, "in": "query", "schema": s} for n, s in op.query.items()]
    if params:
        out["parameters"] = params
    if op.body is not None:
        # No body reads as `{}` (`Request.json`): optional when `{}` is a valid body.
        needed = any(f.is_required() for f in op.body.model_fields.values())
        out["requestBody"] = {
            "required": needed,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    responses: dict[str, Any] = {}
    if op.raw:
        responses[str(op.ok)] = {
            "description": "OK",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    elif op.response is None:
        responses[str(op.ok)] = {"description": "Done"}
    else:
        responses[str(op.ok)] = {
            "description": "OK",
            "content": {"application/json": {"schema": _ref(op.response)}},
        }
    if not op.public:
        for status in sorted({*AUTH_ERRORS, *op.errors}):
            responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
        out["security"] = [{"basic": []}, {"sigv4": []}]
    out["responses"] = responses
    return out


def _error(status: int, text: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": text,
        "content": {"application/json": {"schema": _ref(ErrorOut)}},
    }
    if status == 429:
        out["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait, when a rate quota refused the request.",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return out


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation_id(op: Op) -> str:
    """`POST /v1/functions/{Name}/executions:batch` -> postFunctionsNameExecutionsBatch."""
    words = re.split(r"[^A-Za-z0-9]+", op.path.removeprefix("/v1/"))
    return op.method + "".join(w[:1].upper() + w[1:] for w in words)
