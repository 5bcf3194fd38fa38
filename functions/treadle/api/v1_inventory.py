"""`/v1/admin/inventory`: every dynamic resource of every tenant, for the platform
admin only (`app/inventory.py`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import LIMIT, Op, Schema
from treadle.app.inventory import InventoryService, Resource
from treadle.domain.errors import InvalidParameter
from treadle.domain.usage import KINDS
from treadle.tenancy.models import ACCOUNT_ID_PATTERN

INVENTORY_PATH = "/v1/admin/inventory"
MAX_IDLE_DAYS = 36_500


class ResourceOut(BaseModel):
    kind: str
    accountId: str
    id: str = Field(description="name:version, a repository or facet name, or an execution ARN.")
    sizeBytes: int | None = Field(
        description="Code, facet file or execution history bytes; null when not known."
    )
    createdAt: int | None = Field(description="Epoch milliseconds; null when not known.")
    lastUsed: int | None = Field(
        description="Epoch milliseconds, to the minute; null if never used since recorded."
    )


class InventoryPage(BaseModel):
    resources: list[ResourceOut]
    nextMarker: str | None


_QUERY: dict[str, Schema] = {
    "tenant": {"type": "string", "pattern": ACCOUNT_ID_PATTERN},
    "kind": {"type": "string", "enum": list(KINDS)},
    "idleDays": {"type": "integer", "minimum": 0, "maximum": MAX_IDLE_DAYS},
    **LIMIT,
}
OPERATIONS = [
    Op("get", INVENTORY_PATH, "Every dynamic resource, with size, creation and last use",
       response=InventoryPage, query=_QUERY, errors=(404,), admin=True,
       description="idleDays: only resources not used (or, never used, not made) in that "
       "many days. A page may hold fewer than `limit` resources and still have a marker."),
]  # fmt: skip


def resource_json(r: Resource) -> dict[str, Any]:
    out = ResourceOut(
        kind=r.kind,
        accountId=r.tenant,
        id=r.id,
        sizeBytes=r.size_bytes,
        createdAt=r.created_ms,
        lastUsed=r.last_used_ms,
    )
    return out.model_dump(mode="json")


def _idle_days(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_IDLE_DAYS:
        raise InvalidParameter(
            f"idleDays must be an integer from 0 to {MAX_IDLE_DAYS}, not {raw!r}."
        )
    return int(raw)


class InventoryApi:
    def __init__(self, inventory: InventoryService) -> None:
        self.inventory = inventory

    def register(self, r: Router) -> None:
        r.add("GET", INVENTORY_PATH, self.list)

    def list(self, request: Request) -> Response:
        tenant = request.q("tenant")
        if tenant is not None and not (tenant.isascii() and tenant.isdigit() and len(tenant) == 12):
            raise InvalidParameter(f"tenant must be a 12-digit account id, not {tenant!r}.")
        found, marker = self.inventory.page(
            tenant=tenant,
            kind=request.q("kind"),
            idle_days=_idle_days(request.q("idleDays")),
            limit=request.limit(100),
            marker=request.q("marker"),
        )
        return Response.json({"resources": [resource_json(r) for r in found], "nextMarker": marker})
