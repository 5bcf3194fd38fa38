"""`/v1/audit` (a tenant's own records) and `/v1/admin/audit` (every tenant's, admin).

Newest first, paged with `marker` (the last record id of the previous page). Filters:
action, resource prefix, outcome, since/until (epoch ms, until exclusive) and, for the
admin, tenant. A tenant's listing is always filtered on its own account id: records
about another tenant are not found, whatever the query says.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import Op, Schema
from treadle.domain.audit import AuditLog, AuditQuery, AuditRecord
from treadle.domain.errors import InvalidParameter


class AuditRecordOut(BaseModel):
    id: str = Field(description="Time-ordered: later records have greater ids.")
    time: int = Field(description="Epoch milliseconds.")
    accessKeyId: str = Field(description="The caller's key (or repository token) id.")
    principal: str = Field(description="tenant-key, admin, sandbox-key, repo-token, anonymous")
    tenant: str
    action: str
    resource: str = Field(description="An ARN, or the request path.")
    outcome: str = Field(description="`succeeded`, or the error code of the refusal.")
    sourceAddress: str


class AuditList(BaseModel):
    records: list[AuditRecordOut]
    nextMarker: str | None


_MS: Schema = {"type": "integer", "minimum": 0}
_FILTERS: dict[str, Schema] = {
    "action": {"type": "string", "maxLength": 64},
    "resource": {"type": "string", "maxLength": 1024, "description": "A prefix."},
    "outcome": {"type": "string", "maxLength": 128},
    "since": _MS,
    "until": _MS,
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    "marker": {"type": "string", "maxLength": 64},
}
OPERATIONS = [
    Op("get", "/v1/audit", "The tenant's audit records, newest first", response=AuditList,
       query=_FILTERS),
    Op("get", "/v1/admin/audit", "Every tenant's audit records, newest first",
       response=AuditList, admin=True,
       query={"tenant": {"type": "string", "pattern": r"^\d{12}$"}, **_FILTERS}),
]  # fmt: skip


def record_json(r: AuditRecord) -> dict[str, Any]:
    out = AuditRecordOut(
        id=r.id,
        time=r.time_ms,
        accessKeyId=r.access_key_id,
        principal=r.principal.value,
        tenant=r.tenant,
        action=r.action,
        resource=r.resource,
        outcome=r.outcome,
        sourceAddress=r.source_address,
    )
    return out.model_dump(mode="json")


def _ms(request: Request, name: str) -> int | None:
    raw = request.q(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 15:
        raise InvalidParameter(f"{name} must be epoch milliseconds (digits), not {raw!r}.")
    return int(raw)


def _text(request: Request, name: str, max_len: int) -> str | None:
    raw = request.q(name)
    if raw is not None and (not raw or len(raw) > max_len):
        raise InvalidParameter(f"{name} must be 1 to {max_len} characters.")
    return raw


class AuditApi:
    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def register(self, r: Router) -> None:
        r.add("GET", "/v1/audit", self.own)
        r.add("GET", "/v1/admin/audit", self.every)

    def _query(self, request: Request, tenant: str | None) -> Response:
        query = AuditQuery(
            tenant=tenant,
            action=_text(request, "action", 64),
            resource_prefix=_text(request, "resource", 1024),
            outcome=_text(request, "outcome", 128),
            since_ms=_ms(request, "since"),
            until_ms=_ms(request, "until"),
            before_id=_text(request, "marker", 64),
            limit=request.limit(50),
        )
        page = self.log.query(query)
        return Response.json(
            {"records": [record_json(r) for r in page.records], "nextMarker": page.next_cursor}
        )

    def own(self, request: Request) -> Response:
        return self._query(request, request.tenant)

    def every(self, request: Request) -> Response:
        tenant = request.q("tenant")
        if tenant is not None and not (len(tenant) == 12 and tenant.isdigit()):
            raise InvalidParameter(f"tenant must be a 12-digit account id, not {tenant!r}.")
        return self._query(request, tenant)
