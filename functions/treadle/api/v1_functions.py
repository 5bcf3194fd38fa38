"""`/v1/functions`: versions with where their code is in Git, and deploys from a ref.

- `GET /v1/functions/<name>/versions[?limit=&marker=]`: $LATEST then the published
  versions, each with its code SHA-256 and the commit of the `functions` repository
  holding its code (and, if deployed from a ref, that source).
- `POST /v1/functions/<name>/deploy` (body: `DeployRequest`): 201 with the published
  version, in the same shape.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import LIMIT, Op
from treadle.app.code_delivery import FUNCTIONS_REPO, DeployRequest, function_dir
from treadle.app.functions import FunctionService
from treadle.domain.ports import FunctionVersion

F = "/v1/functions"


class SourceOut(BaseModel):
    repository: str
    ref: str
    path: str
    commitSha: str


class VersionOut(BaseModel):
    functionName: str
    version: str
    functionArn: str
    codeSha256: str = Field(description="Base64 SHA-256 of the zip, as Lambda reports it.")
    codeSize: int
    repository: str
    path: str = Field(description="Where the code is in `repository`: functions/<name>/.")
    commitSha: str | None = Field(
        description="Commit of `repository` holding this code; null if uploaded before "
        "code was mirrored into Git."
    )
    source: SourceOut | None = Field(description="Set when deployed from a repository ref.")
    handler: str
    runtime: str
    description: str
    lastModified: float = Field(description="Epoch seconds.")
    revisionId: str


class VersionList(BaseModel):
    versions: list[VersionOut]
    nextMarker: str | None


OPERATIONS = [
    Op("get", F + "/{Name}/versions", "$LATEST and published versions, with their commits",
       response=VersionList, query=LIMIT, errors=(404,)),
    Op("post", F + "/{Name}/deploy", "Publish a version from a repository ref", 201,
       VersionOut, DeployRequest, errors=(402, 404, 409)),
]  # fmt: skip


def version_view(fn: FunctionVersion) -> VersionOut:
    source = fn.source
    return VersionOut(
        functionName=fn.function_name,
        version=fn.version,
        functionArn=fn.qualified_arn,
        codeSha256=fn.code_sha256,
        codeSize=fn.code_size,
        repository=FUNCTIONS_REPO,
        path=f"{function_dir(fn.function_name)}/",
        commitSha=fn.commit_sha,
        source=None
        if source is None
        else SourceOut(
            repository=source.repository,
            ref=source.ref,
            path=source.path,
            commitSha=source.commit_sha,
        ),
        handler=fn.handler,
        runtime=fn.runtime,
        description=fn.description,
        lastModified=fn.last_modified_ms / 1000,
        revisionId=fn.revision_id,
    )


class FunctionsApi:
    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions

    def register(self, r: Router) -> None:
        r.add("GET", F + "/{Name}/versions", self.versions)
        r.add("POST", F + "/{Name}/deploy", self.deploy)

    def versions(self, request: Request) -> Response:
        items, marker = self.functions.versions(
            request.tenant, request.params["Name"], request.q("marker"), request.limit(50)
        )
        listed = VersionList(versions=[version_view(fn) for fn in items], nextMarker=marker)
        return Response.json(listed.model_dump(mode="json"))

    def deploy(self, request: Request) -> Response:
        body = DeployRequest.model_validate(request.json())
        fn = self.functions.deploy(request.tenant, request.params["Name"], body)
        return Response.json(version_view(fn).model_dump(mode="json"), status=201)
