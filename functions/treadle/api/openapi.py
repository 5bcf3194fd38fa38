"""The OpenAPI 3.1 document of `/v1`, built from the same pydantic models the routes use.

Request bodies are the routes' own models (so the document cannot drift from what is
validated); responses are described by the models below, and a test runs schemathesis
against a live server to check that every answer matches them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from treadle.api.v1_repos import CommitBody, CreateRepoBody, CreateTokenBody
from treadle.api.v1_tenants import CreateTenantBody, UpdateKeyBody, UpdateTenantBody
from treadle.facets.models import NAME_PATTERN

ACCOUNT = {"type": "string", "pattern": r"^\d{12}$"}
REPO = {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,100}$"}
KEY_ID = {"type": "string", "pattern": r"^[A-Z0-9]{16,128}$"}


class ErrorDetail(BaseModel):
    code: str
    message: str
    retryable: bool


class ErrorOut(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


class QuotasOut(BaseModel):
    maxFunctions: int
    maxCodeBytes: int
    maxRunningExecutions: int
    maxStartsPerSecond: float
    maxFacets: int
    maxFacetBytes: int


class TenantOut(BaseModel):
    accountId: str
    name: str
    createdAt: int
    disabled: bool
    quotas: QuotasOut


class KeyOut(BaseModel):
    accessKeyId: str
    accountId: str
    status: str
    createdAt: int
    secretAccessKey: str | None = Field(default=None, description="Only when the key is made.")


class TenantCreated(BaseModel):
    tenant: TenantOut
    accessKey: KeyOut


class TenantList(BaseModel):
    tenants: list[TenantOut]
    nextMarker: str | None


class KeyList(BaseModel):
    accessKeys: list[KeyOut]


class RepoOut(BaseModel):
    name: str
    cloneUrl: str


class RepoDetail(RepoOut):
    refs: dict[str, str]


class FacetOut(BaseModel):
    name: str
    sizeBytes: int = Field(description="The database and its write-ahead log.")
    lastUsed: int = Field(description="Last write, epoch milliseconds.")


class FacetList(BaseModel):
    facets: list[FacetOut]


class RepoList(BaseModel):
    repositories: list[RepoOut]
    nextMarker: str | None


class TokenOut(BaseModel):
    tokenId: str
    access: str
    createdAt: int
    expiresAt: int


class TokenCreated(TokenOut):
    token: str
    username: str
    cloneUrl: str


class TokenList(BaseModel):
    tokens: list[TokenOut]


class CommitCreated(BaseModel):
    sha: str
    branch: str


class CommitOut(BaseModel):
    sha: str
    tree: str
    parents: list[str]
    author: str
    authoredAt: int
    committer: str
    committedAt: int
    message: str


class CommitList(BaseModel):
    commits: list[CommitOut]


class TreeEntryOut(BaseModel):
    name: str
    path: str
    type: str
    mode: str
    sha: str


class TreeOut(BaseModel):
    ref: str
    path: str
    entries: list[TreeEntryOut]


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    ok: int = 200
    response: type[BaseModel] | None = None  # None: no body (204) or raw bytes
    body: type[BaseModel] | None = None
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    admin: bool = False
    raw: bool = False


_Schema = dict[str, Any]
_LIMIT: dict[str, _Schema] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    "marker": {"type": "string"},
}
_REF: dict[str, _Schema] = {"ref": {"type": "string", "minLength": 1, "maxLength": 256}}

OPERATIONS: list[Op] = [
    Op("get", "/v1/health", "Liveness", response=Health),
    Op("post", "/v1/tenants", "Create a tenant and its first key", 201, TenantCreated,
       CreateTenantBody, admin=True),
    Op("get", "/v1/tenants", "List tenants", response=TenantList, query=_LIMIT, admin=True),
    Op("get", "/v1/tenants/{Account}", "Describe a tenant", response=TenantOut, admin=True),
    Op("patch", "/v1/tenants/{Account}", "Disable, enable or change quotas", response=TenantOut,
       body=UpdateTenantBody, admin=True),
    Op("post", "/v1/tenants/{Account}/keys", "Create an access key", 201, KeyOut, admin=True),
    Op("get", "/v1/tenants/{Account}/keys", "List access keys (no secrets)", response=KeyList,
       admin=True),
    Op("patch", "/v1/tenants/{Account}/keys/{KeyId}", "Activate or deactivate a key",
       response=KeyOut, body=UpdateKeyBody, admin=True),
    Op("post", "/v1/tenants/{Account}/keys/{KeyId}/rotate",
       "Make a new key and deactivate this one, atomically", 201, KeyOut, admin=True),
    Op("get", "/v1/tenants/{Account}/facets", "A tenant's facets", response=FacetList,
       admin=True),
    Op("get", "/v1/facets", "List the tenant's facets", response=FacetList),
    Op("get", "/v1/facets/{Facet}/export", "A consistent copy of a facet, as a SQLite file",
       raw=True),
    Op("delete", "/v1/facets/{Facet}", "Delete a facet", 204),
    Op("post", "/v1/repos", "Create a repository", 201, RepoOut, CreateRepoBody),
    Op("get", "/v1/repos", "List repositories", response=RepoList, query=_LIMIT),
    Op("get", "/v1/repos/{Repo}", "Describe a repository and its refs", response=RepoDetail),
    Op("delete", "/v1/repos/{Repo}", "Delete a repository", 204),
    Op("post", "/v1/repos/{Repo}/commits", "Commit files (compare-and-swap on the parent)",
       201, CommitCreated, CommitBody),
    Op("get", "/v1/repos/{Repo}/commits", "The log at a ref, newest first",
       response=CommitList, query={**_REF, "limit": {"type": "integer", "minimum": 1,
                                                     "maximum": 1000}}),
    Op("get", "/v1/repos/{Repo}/tree", "A directory at a ref", response=TreeOut,
       query={**_REF, "path": {"type": "string"}}),
    Op("get", "/v1/repos/{Repo}/blob", "A file's bytes at a ref", raw=True,
       query={**_REF, "path": {"type": "string", "minLength": 1}}),
    Op("post", "/v1/repos/{Repo}/tokens",
       "Mint a Git token for this repository (HTTP Basic: user x-token, password the "
       "token; shown once)", 201, TokenCreated, CreateTokenBody),
    Op("get", "/v1/repos/{Repo}/tokens", "List the repository's live tokens (no secrets)",
       response=TokenList),
    Op("delete", "/v1/repos/{Repo}/tokens/{TokenId}", "Revoke a token", 204),
]  # fmt: skip

NAME = {"type": "string", "pattern": r"^[a-zA-Z0-9_-]{1,64}$"}
FACET = {"type": "string", "pattern": "^" + NAME_PATTERN + "$"}
TOKEN_ID = {"type": "string", "pattern": r"^rt[0-9a-f]{24}$"}
_PARAMS = {
    "Account": ACCOUNT,
    "Repo": REPO,
    "KeyId": KEY_ID,
    "Name": NAME,
    "ExecutionName": NAME,
    "Facet": FACET,
    "TokenId": TOKEN_ID,
    "Arn": {"type": "string", "minLength": 1, "description": "A durable execution ARN"},
    "WebhookId": {"type": "string", "pattern": r"^wh_[0-9a-f]{24}$"},
}
_ERRORS = {
    "400": "Invalid request",
    "401": "Missing or wrong credentials (HTTP Basic)",
    "403": "Refused: bad signature, or this principal may not call this operation",
    "404": "No such resource (or another tenant's)",
    "409": "The resource's state forbids the request",
    "413": "Request too large",
    "429": "Throttled by a quota",
}


def build_document(extra: list[Op] | None = None) -> dict[str, Any]:
    # Imported here: v1_functions declares its operations with this module's `Op`.
    from treadle.api.v1_executions import OPENAPI_OPERATIONS as EXECUTION_OPERATIONS
    from treadle.api.v1_functions import OPENAPI_OPERATIONS
    from treadle.api.v1_notifications import OPENAPI_OPERATIONS as NOTIFICATION_OPERATIONS

    ops = OPERATIONS + OPENAPI_OPERATIONS + EXECUTION_OPERATIONS + (extra or [])
    ops += NOTIFICATION_OPERATIONS  # status-change stream and webhooks
    models: set[type[BaseModel]] = {ErrorOut}
    for op in ops:
        models.update(m for m in (op.response, op.body) if m is not None)
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Treadle platform API (/v1)",
            "version": "1",
            "description": "Tenants (admin), Git repositories, deployments, events to "
            "executions and batch starts. The "
            "Lambda-compatible surface is documented by AWS; Git is smart HTTP under /git.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
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
    params = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in _PARAMS.items()
        if "{" + name + "}" in op.path
    ]
    params += [{"name": n, "in": "query", "schema": s} for n, s in op.query.items()]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
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
    if op.path != "/v1/health":
        for status, text in _ERRORS.items():
            responses[status] = {
                "description": text,
                "content": {"application/json": {"schema": _ref(ErrorOut)}},
            }
        out["security"] = [{"basic": []}, {"sigv4": []}]
    out["responses"] = responses
    if op.admin:
        out["description"] = "Platform admin credential only."
    return out


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation_id(op: Op) -> str:
    words = [w.strip("{}") for w in op.path.split("/")[2:]]
    return op.method + "".join(w[:1].upper() + w[1:] for w in words)
