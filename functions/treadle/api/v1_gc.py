"""`POST /v1/tenants/{Account}/gc`: the platform admin runs a tenant's garbage
collection now, or (`dryRun`) asks what it would remove (`app/gc.py`);
`POST /v1/admin/gc`: the same for what the tenants share (code packages)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import Op
from treadle.app.gc import DEFAULT_LIMIT, GarbageCollector, GcReport, Who
from treadle.domain.audit import current_scope
from treadle.domain.gc import Removal

GC_PATH = "/v1/tenants/{Account}/gc"
PLATFORM_GC_PATH = "/v1/admin/gc"
Kind = Literal["functionVersion", "function", "repository", "facet", "gitObjects", "codePackage"]


class GcBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    dryRun: StrictBool = Field(default=False, description="List what would go; remove nothing.")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=10_000, description="Removals at most.")


class RemovalOut(BaseModel):
    kind: Kind
    resource: str = Field(
        description="name:version, or a function, repository (also for gitObjects) or"
        " facet; a code package's SHA-256 (hex)."
    )
    sizeBytes: int | None = Field(
        description="Code, facet or freed Git bytes; null when not known (before a repack)."
    )
    reason: str


class SkippedOut(RemovalOut):
    skippedBecause: str


class GcOut(BaseModel):
    accountId: str = Field(description="The tenant; empty for the platform's own run.")
    dryRun: bool
    removed: list[RemovalOut] = Field(description="What went (a dry run: what would go).")
    skipped: list[SkippedOut] = Field(
        description="Planned but kept: pinned by an execution or aliased since the plan."
    )
    truncated: bool = Field(description="More was planned than `limit`: run again.")


OPERATIONS = [
    Op("post", GC_PATH, "Run a tenant's garbage collection, or list what it would remove",
       response=GcOut, body=GcBody, errors=(404,), admin=True,
       description="The tenant's gcPolicy decides what goes. Each removal is audited."),
    Op("post", PLATFORM_GC_PATH, "Remove code packages no version references, or list them",
       response=GcOut, body=GcBody, admin=True,
       description="A package goes once no function version of any tenant has named it "
       "for the grace period (TREADLE_GC_PACK_GRACE_SECONDS); the periodic run does the same. "
       "Each removal is audited."),
]  # fmt: skip


def _removal(r: Removal) -> dict[str, Any]:
    return {"kind": r.kind.value, "resource": r.resource, "sizeBytes": r.size_bytes,
            "reason": r.reason}  # fmt: skip


def report_json(report: GcReport) -> dict[str, Any]:
    out = GcOut(
        accountId=report.tenant,
        dryRun=report.dry_run,
        removed=[RemovalOut.model_validate(_removal(r)) for r in report.removed],
        skipped=[
            SkippedOut.model_validate({**_removal(r), "skippedBecause": why})
            for r, why in report.skipped
        ],
        truncated=report.truncated,
    )
    return out.model_dump(mode="json")


class GcApi:
    def __init__(self, collector: GarbageCollector) -> None:
        self.collector = collector

    def register(self, r: Router) -> None:
        r.add("POST", GC_PATH, self.run)
        r.add("POST", PLATFORM_GC_PATH, self.run_platform)

    def run(self, request: Request) -> Response:
        body = GcBody.model_validate(request.json())
        report = self.collector.run(
            request.params["Account"], dry_run=body.dryRun, who=Who.from_request(), limit=body.limit
        )
        scope = current_scope()
        if scope is not None:
            # Each removal wrote its own record (with its change where the store takes
            # one); the call itself is no further change to record.
            scope.joined = True
        return Response.json(report_json(report))

    def run_platform(self, request: Request) -> Response:
        body = GcBody.model_validate(request.json())
        report = self.collector.collect_code(
            dry_run=body.dryRun, who=Who.from_request(), limit=body.limit
        )
        scope = current_scope()
        if scope is not None:
            scope.joined = True
        return Response.json(report_json(report))
