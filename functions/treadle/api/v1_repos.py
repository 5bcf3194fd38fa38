"""`/v1/repos`: a tenant's Git repositories as REST (create, list, commit, read) and
their Git tokens (mint, list, revoke)."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from treadle.api.http import Request, Response, Router
from treadle.api.openapi_ops import LIMIT, Op, Schema
from treadle.artifacts.ports import RepoToken
from treadle.artifacts.service import ArtifactService, CommitInfo, TreeEntry
from treadle.artifacts.tokens import DEFAULT_TTL_S, MAX_TTL_S, TOKEN_USER, RepoTokens
from treadle.domain.errors import InvalidParameter

R = "/v1/repos"


class CreateRepoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="1 to 100 letters, digits, '.', '_' or '-'.")
    forkOf: str | None = Field(
        default=None,
        description="Fork this repository of yours: its refs now, its objects shared "
        "(not copied); deleting it later does not break the fork.",
    )
    bundle: str | None = Field(
        default=None,
        description="Import a Git bundle (base64 of `git bundle create f --all`; no "
        "prerequisites).",
    )


class CreateTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access: StrictStr = Field(description="'read' (clone, fetch) or 'write' (push too).")
    ttlSeconds: StrictInt = Field(
        default=DEFAULT_TTL_S, description=f"Lifetime, 1 to {MAX_TTL_S} seconds."
    )


def _token(t: RepoToken) -> TokenOut:
    return TokenOut(
        tokenId=t.token_id,
        access=t.access,
        createdAt=t.created_ms // 1000,
        expiresAt=t.expires_ms // 1000,
    )


class FileContent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content: str
    encoding: Literal["utf-8", "base64"] = "utf-8"


class CommitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    branch: str = "main"
    message: str = Field(min_length=1)
    author: str = Field(default="Treadle <treadle@localhost>", description="'Name <email>'")
    expectedParent: str | None = Field(
        default=None,
        description="Compare-and-swap: the branch must be at this commit (40 zeros: must "
        "not exist yet), else 409 and nothing changes.",
    )
    files: dict[str, FileContent | None] = Field(
        description="Path to new content; null deletes the path.", min_length=1
    )


class RepoOut(BaseModel):
    name: str
    cloneUrl: str


class RepoDetail(RepoOut):
    refs: dict[str, str] = Field(description="Ref name to commit SHA.")


class RepoList(BaseModel):
    repositories: list[RepoOut]
    nextMarker: str | None


class TokenOut(BaseModel):
    tokenId: str
    access: str
    createdAt: int = Field(description="Epoch seconds.")
    expiresAt: int = Field(description="Epoch seconds.")


class TokenCreated(TokenOut):
    token: str = Field(description="The password for Git; shown once (only its hash is kept).")
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


_REF: dict[str, Schema] = {"ref": {"type": "string", "minLength": 1, "maxLength": 256}}
_LIMIT = {"limit": LIMIT["limit"]}
_R = R + "/{Repo}"
OPERATIONS = [
    Op("post", R, "Create a repository (empty, a fork, or from a bundle)", 201, RepoOut,
       CreateRepoBody, errors=(404, 409)),
    Op("get", R, "List repositories", response=RepoList, query=LIMIT),
    Op("get", _R, "Describe a repository and its refs", response=RepoDetail, errors=(404,)),
    Op("delete", _R, "Delete a repository", 204, errors=(404,)),
    Op("post", _R + "/commits", "Commit files (compare-and-swap on the parent)", 201,
       CommitCreated, CommitBody, errors=(404, 409)),
    Op("get", _R + "/commits", "The log at a ref, newest first", response=CommitList,
       query={**_REF, **_LIMIT}, errors=(404,)),
    Op("get", _R + "/tree", "A directory at a ref", response=TreeOut,
       query={**_REF, "path": {"type": "string"}}, errors=(404,)),
    Op("get", _R + "/blob", "A file's bytes at a ref", raw=True,
       query={**_REF, "path": {"type": "string", "minLength": 1}}, errors=(404,)),
    Op("post", _R + "/tokens",
       "Mint a Git token for this repository (HTTP Basic: user x-token, password the "
       "token; shown once)", 201, TokenCreated, CreateTokenBody, errors=(404,)),
    Op("get", _R + "/tokens", "List the repository's live tokens (no secrets)",
       response=TokenList, errors=(404,)),
    Op("delete", _R + "/tokens/{TokenId}", "Revoke a token", 204, errors=(404,)),
]  # fmt: skip


def _decode(path: str, item: FileContent | None) -> bytes | None:
    if item is None:
        return None
    if item.encoding == "utf-8":
        return item.content.encode("utf-8")
    try:
        return base64.b64decode(item.content, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII characters
        raise InvalidParameter(f"files.{path}.content is not valid base64.") from None


def _entry(e: TreeEntry) -> TreeEntryOut:
    return TreeEntryOut(name=e.name, path=e.path, type=e.kind, mode=f"{e.mode:06o}", sha=e.sha)


def _commit(c: CommitInfo) -> CommitOut:
    return CommitOut(
        sha=c.sha,
        tree=c.tree,
        parents=list(c.parents),
        author=c.author,
        authoredAt=c.author_time,
        committer=c.committer,
        committedAt=c.commit_time,
        message=c.message,
    )


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response.json(model.model_dump(mode="json"), status=status)


class ReposApi:
    def __init__(self, artifacts: ArtifactService, tokens: RepoTokens, *, public_url: str) -> None:
        self.artifacts = artifacts
        self.tokens = tokens
        self.public_url = public_url

    def register(self, r: Router) -> None:
        r.add("POST", R, self.create)
        r.add("GET", R, self.list)
        r.add("GET", R + "/{Repo}", self.describe)
        r.add("DELETE", R + "/{Repo}", self.delete)
        r.add("POST", R + "/{Repo}/commits", self.commit)
        r.add("GET", R + "/{Repo}/commits", self.log)
        r.add("GET", R + "/{Repo}/tree", self.tree)
        r.add("GET", R + "/{Repo}/blob", self.blob)
        r.add("POST", R + "/{Repo}/tokens", self.mint_token)
        r.add("GET", R + "/{Repo}/tokens", self.list_tokens)
        r.add("DELETE", R + "/{Repo}/tokens/{TokenId}", self.revoke_token)

    def clone_url(self, tenant: str, name: str) -> str:
        return f"{self.public_url}/git/{tenant}/{name}.git"

    def create(self, request: Request) -> Response:
        body = CreateRepoBody.model_validate(request.json())
        self.artifacts.create_repo(
            request.tenant, body.name, fork_of=body.forkOf, bundle=body.bundle
        )
        return _json(
            RepoOut(name=body.name, cloneUrl=self.clone_url(request.tenant, body.name)), 201
        )

    def list(self, request: Request) -> Response:
        page = self.artifacts.list_repos(
            request.tenant, limit=request.limit(100), marker=request.q("marker")
        )
        repos = [RepoOut(name=n, cloneUrl=self.clone_url(request.tenant, n)) for n in page.names]
        return _json(RepoList(repositories=repos, nextMarker=page.next_marker))

    def describe(self, request: Request) -> Response:
        name = request.params["Repo"]
        refs = self.artifacts.refs(request.tenant, name)
        return _json(
            RepoDetail(name=name, cloneUrl=self.clone_url(request.tenant, name), refs=refs)
        )

    def delete(self, request: Request) -> Response:
        self.artifacts.delete_repo(request.tenant, request.params["Repo"])
        return Response(status=204)

    def commit(self, request: Request) -> Response:
        body = CommitBody.model_validate(request.json())
        files = {path: _decode(path, item) for path, item in body.files.items()}
        sha = self.artifacts.commit_files(
            request.tenant,
            request.params["Repo"],
            body.branch,
            files,
            body.message,
            body.author,
            expected_parent=body.expectedParent,
        )
        return _json(CommitCreated(sha=sha, branch=body.branch), 201)

    def log(self, request: Request) -> Response:
        commits = self.artifacts.log(
            request.tenant, request.params["Repo"], request.q("ref") or "HEAD", request.limit(50)
        )
        return _json(CommitList(commits=[_commit(c) for c in commits]))

    def tree(self, request: Request) -> Response:
        ref = request.q("ref") or "HEAD"
        path = request.q("path") or ""
        entries = self.artifacts.read_tree(request.tenant, request.params["Repo"], ref, path)
        return _json(TreeOut(ref=ref, path=path, entries=[_entry(e) for e in entries]))

    def blob(self, request: Request) -> Response:
        path = request.q("path")
        if not path:
            raise InvalidParameter("The query parameter 'path' is required.")
        data = self.artifacts.read_blob(
            request.tenant, request.params["Repo"], request.q("ref") or "HEAD", path
        )
        return Response(status=200, body=data, headers={"content-type": "application/octet-stream"})

    # -- tokens --------------------------------------------------------------------

    def mint_token(self, request: Request) -> Response:
        body = CreateTokenBody.model_validate(request.json())
        name = request.params["Repo"]
        token, secret = self.tokens.mint(request.tenant, name, body.access, body.ttlSeconds)
        info = TokenCreated(
            **_token(token).model_dump(),
            token=secret,  # shown once: only its hash is stored
            username=TOKEN_USER,
            cloneUrl=self.clone_url(request.tenant, name),
        )
        return _json(info, 201)

    def list_tokens(self, request: Request) -> Response:
        tokens = self.tokens.list(request.tenant, request.params["Repo"])
        return _json(TokenList(tokens=[_token(t) for t in tokens]))

    def revoke_token(self, request: Request) -> Response:
        self.tokens.revoke(request.tenant, request.params["Repo"], request.params["TokenId"])
        return Response(status=204)
