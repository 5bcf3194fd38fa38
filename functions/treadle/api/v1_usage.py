"""`/v1/tenants/{Account}/usage`: what a tenant uses now (the admin: any tenant's; a
tenant: its own, the one `/v1/tenants` route a tenant's key may call)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import Op
from treadle.app.usage import TenantUsage, UsageService

USAGE_PATH = "/v1/tenants/{Account}/usage"


class ExecutionsUsageOut(BaseModel):
    byStatus: dict[str, int] = Field(description="Recorded executions by status.")
    running: int = Field(description="RUNNING and holding an invocation now.")
    waiting: int = Field(description="RUNNING but parked on a wait, a callback or a retry.")
    queued: int = Field(description="Starts accepted QUEUED, waiting for capacity.")
    startsLastMinute: int = Field(
        description="Starts in the last 60 s, estimated from two per-minute buckets."
    )


class UsageOut(BaseModel):
    accountId: str
    at: int = Field(description="When it was read, epoch milliseconds.")
    functions: int
    versions: int = Field(description="Published versions ($LATEST not counted).")
    codeBytes: int = Field(description="Code of $LATEST and every published version.")
    repositories: int
    repositoryBytes: int = Field(
        description="Their packs and indexes; coarse (moved after each push and removal)."
    )
    facets: int
    facetBytes: int = Field(description="On disk when read (tenant code writes facets).")
    executions: ExecutionsUsageOut


OPERATIONS = [
    Op("get", USAGE_PATH, "A tenant's usage", response=UsageOut, errors=(404,),
       description="The platform admin may read any tenant's; a tenant's key only its own."),
]  # fmt: skip


def usage_json(u: TenantUsage) -> dict[str, Any]:
    out = UsageOut(
        accountId=u.tenant,
        at=u.at_ms,
        functions=u.functions,
        versions=u.versions,
        codeBytes=u.code_bytes,
        repositories=u.repositories,
        repositoryBytes=u.repository_bytes,
        facets=u.facets,
        facetBytes=u.facet_bytes,
        executions=ExecutionsUsageOut(
            byStatus=u.by_status,
            running=u.running,
            waiting=u.waiting,
            queued=u.queued,
            startsLastMinute=u.starts_last_minute,
        ),
    )
    return out.model_dump(mode="json")


class UsageApi:
    def __init__(self, usage: UsageService) -> None:
        self.usage = usage

    def register(self, r: Router) -> None:
        r.add("GET", USAGE_PATH, self.get)

    def get(self, request: Request) -> Response:
        return Response.json(usage_json(self.usage.usage(request.params["Account"])))
