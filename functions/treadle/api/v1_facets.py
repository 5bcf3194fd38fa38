"""`/v1/facets`: a tenant's facets (list, export as a SQLite file, delete); the admin's
view of any tenant's under `/v1/tenants/{Account}/facets` (admin-only, like the rest
of `/v1/tenants`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import Op
from treadle.facets import FacetInfo, Facets


class FacetOut(BaseModel):
    name: str
    sizeBytes: int = Field(description="The database and its write-ahead log.")
    lastUsed: int = Field(description="Last write, epoch milliseconds.")


class FacetList(BaseModel):
    facets: list[FacetOut]


class FacetGrantOut(BaseModel):
    name: str
    maxBytes: int = Field(description="The tenant's maxFacetBytes: what the facet may hold.")


_OPEN = (
    "Made on first use within the tenant's quotas (402 beyond them). What tenant code "
    "that opens facets itself (on a shared filesystem) calls with its sandbox key; "
    "the tenant's own keys may call it too."
)
OPERATIONS = [
    Op("get", "/v1/facets", "List the tenant's facets", response=FacetList),
    Op("post", "/v1/facets/{Facet}", "Open a facet: made if new", response=FacetGrantOut,
       errors=(402,), description=_OPEN),
    Op("get", "/v1/facets/{Facet}/export", "A consistent copy of a facet, as a SQLite file",
       raw=True, errors=(404,)),
    Op("delete", "/v1/facets/{Facet}", "Delete a facet", 204, errors=(404,)),
    Op("get", "/v1/tenants/{Account}/facets", "A tenant's facets", response=FacetList,
       errors=(404,), admin=True),
]  # fmt: skip


def facet_json(f: FacetInfo) -> dict[str, Any]:
    out = FacetOut(name=f.name, sizeBytes=f.size_bytes, lastUsed=f.last_used_ms)
    return out.model_dump(mode="json")


class FacetsApi:
    def __init__(self, facets: Facets) -> None:
        self.facets = facets

    def register(self, r: Router) -> None:
        r.add("GET", "/v1/facets", self.list)
        r.add("POST", "/v1/facets/{Facet}", self.open)
        r.add("GET", "/v1/facets/{Facet}/export", self.export)
        r.add("DELETE", "/v1/facets/{Facet}", self.delete)
        r.add("GET", "/v1/tenants/{Account}/facets", self.list_of)

    def list(self, request: Request) -> Response:
        facets = self.facets.listing(_tenant(request))
        return Response.json({"facets": [facet_json(f) for f in facets]})

    def open(self, request: Request) -> Response:
        """Made on first use within the quotas: what tenant code that mounts the facets
        itself (a tenant Lambda on EFS) asks before opening the file."""
        grant = self.facets.open(_tenant(request), request.params["Facet"])
        out = FacetGrantOut(name=grant.name, maxBytes=grant.max_bytes)
        return Response.json(out.model_dump(mode="json"))

    def list_of(self, request: Request) -> Response:
        facets = self.facets.listing_of(request.params["Account"])
        return Response.json({"facets": [facet_json(f) for f in facets]})

    def export(self, request: Request) -> Response:
        name = request.params["Facet"]
        data = self.facets.export(_tenant(request), name)
        return Response(
            200,
            data,
            {
                "content-type": "application/octet-stream",
                "content-disposition": f'attachment; filename="{name}.sqlite"',
            },
        )

    def delete(self, request: Request) -> Response:
        self.facets.delete(_tenant(request), request.params["Facet"])
        return Response(204, b"", {})


def _tenant(request: Request) -> str:
    tenant = request.tenant
    if not tenant:  # the application authenticates every /v1 route but these
        raise AssertionError("tenant route without a tenant")
    return tenant
