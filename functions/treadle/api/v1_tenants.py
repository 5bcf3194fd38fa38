"""`/v1/tenants`: the platform admin manages tenants, their keys and quotas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from treadle.api.http import Request, Response, Router
from treadle.domain.errors import InvalidParameter
from treadle.tenancy.admin import TenantAdmin
from treadle.tenancy.models import (
    ACCOUNT_ID_PATTERN,
    EGRESS,
    MAX_PAYLOAD_BYTES_PER_OPERATION,
    AccessKey,
    Egress,
    KeyStatus,
    Quotas,
    Tenant,
)

T = "/v1/tenants"


class QuotaChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")
    maxFunctions: int | None = Field(default=None, ge=0)
    maxCodeBytes: int | None = Field(default=None, ge=0)
    maxRunningExecutions: int | None = Field(default=None, ge=0)
    maxStartsPerSecond: float | None = Field(default=None, gt=0)
    maxFacets: int | None = Field(default=None, ge=0)
    maxFacetBytes: int | None = Field(default=None, ge=0)
    # Per execution (docs/limits.md): pinned by each execution when it starts.
    maxOperationsPerExecution: int | None = Field(default=None, ge=1)
    maxHistoryBytesPerExecution: int | None = Field(default=None, ge=1)
    maxPayloadBytesPerOperation: int | None = Field(
        default=None, ge=1, le=MAX_PAYLOAD_BYTES_PER_OPERATION
    )

    def changes(self) -> dict[str, Any]:
        names = {
            "maxFunctions": "max_functions",
            "maxCodeBytes": "max_code_bytes",
            "maxRunningExecutions": "max_running_executions",
            "maxStartsPerSecond": "max_starts_per_second",
            "maxFacets": "max_facets",
            "maxFacetBytes": "max_facet_bytes",
            "maxOperationsPerExecution": "max_operations_per_execution",
            "maxHistoryBytesPerExecution": "max_history_bytes_per_execution",
            "maxPayloadBytesPerOperation": "max_payload_bytes_per_operation",
        }
        return {names[k]: v for k, v in self.model_dump(exclude_none=True).items()}


class CreateTenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    accountId: str | None = Field(default=None, pattern=ACCOUNT_ID_PATTERN)
    quotas: QuotaChanges | None = None


class UpdateTenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disabled: bool | None = None
    quotas: QuotaChanges | None = None
    # "none" (default), "all", or ["host:port", "CIDR[:port]", ...]
    egress: Egress | None = None


class UpdateKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: KeyStatus


def tenant_json(t: Tenant) -> dict[str, Any]:
    q = t.quotas
    return {
        "accountId": t.account_id,
        "name": t.name,
        "createdAt": t.created_ms,
        "disabled": t.disabled,
        "quotas": {
            "maxFunctions": q.max_functions,
            "maxCodeBytes": q.max_code_bytes,
            "maxRunningExecutions": q.max_running_executions,
            "maxStartsPerSecond": q.max_starts_per_second,
            "maxFacets": q.max_facets,
            "maxFacetBytes": q.max_facet_bytes,
            "maxOperationsPerExecution": q.max_operations_per_execution,
            "maxHistoryBytesPerExecution": q.max_history_bytes_per_execution,
            "maxPayloadBytesPerOperation": q.max_payload_bytes_per_operation,
        },
        "egress": EGRESS.dump_python(t.egress),
    }


def key_json(k: AccessKey, *, with_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "accessKeyId": k.access_key_id,
        "accountId": k.tenant,
        "status": k.status.value,
        "createdAt": k.created_ms,
    }
    if with_secret:  # only when the key is made: it is never shown again
        out["secretAccessKey"] = k.secret.get_secret_value()
    return out


class TenantsApi:
    def __init__(self, admin: TenantAdmin) -> None:
        self.admin = admin

    def register(self, r: Router) -> None:
        r.add("POST", T, self.create)
        r.add("GET", T, self.list)
        r.add("GET", T + "/{Account}", self.get)
        r.add("PATCH", T + "/{Account}", self.update)
        r.add("POST", T + "/{Account}/keys", self.create_key)
        r.add("GET", T + "/{Account}/keys", self.list_keys)
        r.add("PATCH", T + "/{Account}/keys/{KeyId}", self.update_key)
        r.add("POST", T + "/{Account}/keys/{KeyId}/rotate", self.rotate_key)

    def create(self, request: Request) -> Response:
        body = CreateTenantBody.model_validate(request.json())
        quotas = Quotas.model_validate(body.quotas.changes()) if body.quotas else None
        tenant, key = self.admin.create_tenant(body.name, account_id=body.accountId, quotas=quotas)
        return Response.json(
            {"tenant": tenant_json(tenant), "accessKey": key_json(key, with_secret=True)},
            status=201,
        )

    def list(self, request: Request) -> Response:
        raw = request.q("limit") or "100"
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise InvalidParameter(f"limit must be an integer from 1 to 1000, not {raw!r}.")
        tenants, marker = self.admin.list_tenants(request.q("marker"), int(raw))
        return Response.json({"tenants": [tenant_json(t) for t in tenants], "nextMarker": marker})

    def get(self, request: Request) -> Response:
        return Response.json(tenant_json(self.admin.get_tenant(request.params["Account"])))

    def update(self, request: Request) -> Response:
        account = request.params["Account"]
        body = UpdateTenantBody.model_validate(request.json())
        tenant = self.admin.get_tenant(account)
        # The egress policy first: it is the change a host may refuse (nothing written).
        if body.egress is not None:
            tenant = self.admin.update_egress(account, body.egress)
        if body.quotas is not None:
            tenant = self.admin.update_quotas(account, body.quotas.changes())
        if body.disabled is True:
            tenant = self.admin.disable_tenant(account)
        elif body.disabled is False:
            tenant = self.admin.enable_tenant(account)
        return Response.json(tenant_json(tenant))

    def create_key(self, request: Request) -> Response:
        key = self.admin.create_key(request.params["Account"])
        return Response.json(key_json(key, with_secret=True), status=201)

    def list_keys(self, request: Request) -> Response:
        keys = self.admin.list_keys(request.params["Account"])
        return Response.json({"accessKeys": [key_json(k) for k in keys]})

    def update_key(self, request: Request) -> Response:
        body = UpdateKeyBody.model_validate(request.json())
        account, key_id = request.params["Account"], request.params["KeyId"]
        if body.status is KeyStatus.ACTIVE:
            key = self.admin.enable_key(account, key_id)
        else:
            key = self.admin.disable_key(account, key_id)
        return Response.json(key_json(key))

    def rotate_key(self, request: Request) -> Response:
        key = self.admin.rotate_key(request.params["Account"], request.params["KeyId"])
        return Response.json(key_json(key, with_secret=True), status=201)
