"""`/v1/tenants`: the platform admin manages tenants, their keys and quotas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import LIMIT, Op
from treadle.domain.gc import GcPolicy
from treadle.tenancy.admin import TenantAdmin
from treadle.tenancy.models import (
    ACCOUNT_ID_PATTERN,
    MAX_PAYLOAD_BYTES_PER_OPERATION,
    AccessKey,
    Egress,
    KeyStatus,
    Quotas,
    Tenant,
)

T = "/v1/tenants"


class QuotaChanges(BaseModel):
    # Strict: JSON `false` is not a quota of 0, nor "5" one of 5.
    model_config = ConfigDict(extra="forbid", strict=True)
    maxFunctions: int | None = Field(default=None, ge=0)
    maxCodeBytes: int | None = Field(default=None, ge=0)
    maxRunningExecutions: int | None = Field(default=None, ge=0)
    maxStartsPerSecond: float | None = Field(default=None, gt=0)
    maxQueued: int | None = Field(default=None, ge=0)
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
            "maxQueued": "max_queued",
            "maxFacets": "max_facets",
            "maxFacetBytes": "max_facet_bytes",
            "maxOperationsPerExecution": "max_operations_per_execution",
            "maxHistoryBytesPerExecution": "max_history_bytes_per_execution",
            "maxPayloadBytesPerOperation": "max_payload_bytes_per_operation",
        }
        return {names[k]: v for k, v in self.model_dump(exclude_none=True).items()}


class GcPolicyBody(BaseModel):
    """A tenant's garbage-collection policy (`docs/operating.md`): each field unset or
    null means that kind is never collected."""

    model_config = ConfigDict(extra="forbid", strict=True)
    keepVersions: int | None = Field(
        default=None, ge=0, le=10_000, description="Published versions kept per function."
    )
    idleRepoDays: int | None = Field(default=None, ge=1, le=36_500)
    idleFacetDays: int | None = Field(default=None, ge=1, le=36_500)
    idleFunctionDays: int | None = Field(default=None, ge=1, le=36_500)

    def policy(self) -> GcPolicy:
        return GcPolicy(
            keep_versions=self.keepVersions,
            idle_repo_days=self.idleRepoDays,
            idle_facet_days=self.idleFacetDays,
            idle_function_days=self.idleFunctionDays,
        )

    @staticmethod
    def of(policy: GcPolicy) -> GcPolicyBody:
        return GcPolicyBody(
            keepVersions=policy.keep_versions,
            idleRepoDays=policy.idle_repo_days,
            idleFacetDays=policy.idle_facet_days,
            idleFunctionDays=policy.idle_function_days,
        )


class CreateTenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    accountId: str | None = Field(default=None, pattern=ACCOUNT_ID_PATTERN)
    quotas: QuotaChanges | None = None


class UpdateTenantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disabled: StrictBool | None = None
    quotas: QuotaChanges | None = None
    # "none" (default), "all", or ["host:port", "CIDR[:port]", ...]
    egress: Egress | None = None
    # Replaces the whole policy ({} collects nothing).
    gcPolicy: GcPolicyBody | None = None


class UpdateKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: KeyStatus


class QuotasOut(BaseModel):
    maxFunctions: int
    maxCodeBytes: int
    maxRunningExecutions: int
    maxStartsPerSecond: float
    maxQueued: int
    maxFacets: int
    maxFacetBytes: int
    maxOperationsPerExecution: int
    maxHistoryBytesPerExecution: int
    maxPayloadBytesPerOperation: int


class TenantOut(BaseModel):
    accountId: str
    name: str
    createdAt: int = Field(description="Epoch milliseconds.")
    disabled: bool
    quotas: QuotasOut
    egress: Egress = Field(description="What the tenant's code may reach on the network.")
    gcPolicy: GcPolicyBody = Field(description="What garbage collection may remove.")


class KeyOut(BaseModel):
    accessKeyId: str
    accountId: str
    status: KeyStatus
    createdAt: int = Field(description="Epoch milliseconds.")
    secretAccessKey: str | None = Field(default=None, description="Only when the key is made.")


class TenantCreated(BaseModel):
    tenant: TenantOut
    accessKey: KeyOut


class TenantList(BaseModel):
    tenants: list[TenantOut]
    nextMarker: str | None


class KeyList(BaseModel):
    accessKeys: list[KeyOut]


_A = T + "/{Account}"
OPERATIONS = [
    Op("post", T, "Create a tenant and its first key", 201, TenantCreated, CreateTenantBody,
       errors=(409,), admin=True),
    Op("get", T, "List tenants", response=TenantList, query=LIMIT, admin=True),
    Op("get", _A, "Describe a tenant", response=TenantOut, errors=(404,), admin=True),
    Op("patch", _A, "Disable, enable, change quotas, the egress or the GC policy",
       response=TenantOut,
       body=UpdateTenantBody, errors=(404,), admin=True),
    Op("post", _A + "/keys", "Create an access key", 201, KeyOut, errors=(404,), admin=True),
    Op("get", _A + "/keys", "List access keys (no secrets)", response=KeyList, errors=(404,),
       admin=True),
    Op("patch", _A + "/keys/{KeyId}", "Activate or deactivate a key", response=KeyOut,
       body=UpdateKeyBody, errors=(404,), admin=True),
    Op("post", _A + "/keys/{KeyId}/rotate",
       "Make a new key and deactivate this one, atomically", 201, KeyOut, errors=(404, 409),
       admin=True),
]  # fmt: skip


def tenant_json(t: Tenant) -> dict[str, Any]:
    q = t.quotas
    out = TenantOut(
        accountId=t.account_id,
        name=t.name,
        createdAt=t.created_ms,
        disabled=t.disabled,
        quotas=QuotasOut(
            maxFunctions=q.max_functions,
            maxCodeBytes=q.max_code_bytes,
            maxRunningExecutions=q.max_running_executions,
            maxStartsPerSecond=q.max_starts_per_second,
            maxQueued=q.max_queued,
            maxFacets=q.max_facets,
            maxFacetBytes=q.max_facet_bytes,
            maxOperationsPerExecution=q.max_operations_per_execution,
            maxHistoryBytesPerExecution=q.max_history_bytes_per_execution,
            maxPayloadBytesPerOperation=q.max_payload_bytes_per_operation,
        ),
        egress=t.egress,
        gcPolicy=GcPolicyBody.of(q.gc),
    )
    return out.model_dump(mode="json")


def key_json(k: AccessKey, *, with_secret: bool = False) -> dict[str, Any]:
    out = KeyOut(
        accessKeyId=k.access_key_id,
        accountId=k.tenant,
        status=k.status,
        createdAt=k.created_ms,
        # Only when the key is made: it is never shown again.
        secretAccessKey=k.secret.get_secret_value() if with_secret else None,
    )
    return out.model_dump(mode="json", exclude_none=True)


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
        tenants, marker = self.admin.list_tenants(request.q("marker"), request.limit(100))
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
        changes = body.quotas.changes() if body.quotas is not None else {}
        if body.gcPolicy is not None:
            # Kept with the quotas: one atomic write changes both.
            changes["gc"] = body.gcPolicy.policy()
        if changes:
            tenant = self.admin.update_quotas(account, changes)
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
