"""`/git/<tenant>/<repo>.git/...`: Git smart HTTP (protocol v0/v1) behind Basic auth.

The same exchange as `dulwich.web` (and `git http-backend`), minus WSGI:
- `GET  info/refs?service=git-upload-pack|git-receive-pack`: the ref advertisement;
- `POST git-upload-pack`: negotiation and the pack (clone, fetch);
- `POST git-receive-pack`: commands and pack in, status report out (push).
Every request is stateless: dulwich's handlers run with `stateless_rpc=True` over the
buffered body, writing into a buffered response (API Gateway has no streaming either).

Clients asking for protocol v2 (the default of git >= 2.26) get a v0 advertisement and
fall back, exactly as with a server that predates v2.

Refusals that mean something in the domain (unknown repository, malformed request) are
domain errors rendered by `text_error`; those of the HTTP exchange itself (method,
content type, dumb protocol, body size) are answered here with the status git expects.
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from collections.abc import Callable
from io import BytesIO
from typing import cast

from dulwich.errors import GitProtocolError
from dulwich.protocol import ReceivableProtocol
from dulwich.server import Backend, BackendRepo, UploadPackHandler

from treadle.api.auth import GitGrant
from treadle.api.errors import text_error
from treadle.api.http import Request, Response
from treadle.artifacts.ports import RepoNotFound
from treadle.artifacts.receive import GuardedReceivePackHandler
from treadle.artifacts.repository import ArtifactRepo, Repositories
from treadle.domain.errors import InvalidParameter, NotFound, TreadleError
from treadle.tenancy.basic import REFUSED
from treadle.tenancy.errors import AccessDenied, BasicAuthRequired

log = logging.getLogger(__name__)

# What a request's credentials open (`Authenticator.git`, `.git_token`).
Authenticate = Callable[[Request], GitGrant]

_PATH = re.compile(r"^/git/(?P<tenant>\d{12})/(?P<repo>[A-Za-z0-9._-]{1,100})\.git(?P<rest>/.*)?$")

_HANDLERS: dict[str, type[UploadPackHandler] | type[GuardedReceivePackHandler]] = {
    "git-upload-pack": UploadPackHandler,
    "git-receive-pack": GuardedReceivePackHandler,
}
_NO_CACHE = {
    "expires": "Fri, 01 Jan 1980 00:00:00 GMT",
    "pragma": "no-cache",
    "cache-control": "no-cache, max-age=0, must-revalidate",
}


class _OneRepoBackend(Backend):
    """dulwich's handlers open their repository by path; ours is already open."""

    def __init__(self, repo: ArtifactRepo) -> None:
        self._repo = repo

    def open_repository(self, path: str) -> BackendRepo:
        return cast(BackendRepo, self._repo)


def _refuse(status: int, message: str) -> Response:
    # Plain text, as `text_error`: git prints the body of a failed request as is.
    return Response(
        status=status, body=(message + "\n").encode(), headers={"content-type": "text/plain"}
    )


def _protocol_version(request: Request) -> int:
    """1 if the client asked for v1 (`Git-Protocol: version=1`); 0 otherwise (v2 too)."""
    for item in (request.header("git-protocol") or "").split(":"):
        if item.strip() == "version=1":
            return 1
    return 0


def _pushes(request: Request, rest_path: str) -> bool:
    """Whether the request is (the advertisement of) a receive-pack."""
    path = rest_path.strip("/")
    if path == "git-receive-pack":
        return True
    return path == "info/refs" and request.q("service") == "git-receive-pack"


class GitHttp:
    def __init__(
        self,
        repositories: Repositories,
        authenticate: Authenticate,
        *,
        max_body_bytes: int = 512 << 20,
        used: Callable[[str, str], None] | None = None,
    ) -> None:
        self._repos = repositories
        self._authenticate = authenticate
        self._max_body = max_body_bytes
        # Told of each fetch or push (tenant, repository): the inventory's last use.
        self._used = used

    def __call__(self, request: Request) -> Response:
        try:
            # Credentials first: git sends a request without them, expects 401 and retries.
            grant = self._authenticate(request)
            m = _PATH.match(request.path)
            if m is None:
                raise NotFound("Not a repository URL: use /git/<account id>/<name>.git")
            if grant.repo is not None and (grant.repo, grant.tenant) != (m["repo"], m["tenant"]):
                # A token opens its repository only; elsewhere it is a wrong password,
                # which tells nothing of what exists there.
                raise BasicAuthRequired(REFUSED)
            if m["tenant"] != grant.tenant:
                # Another tenant's repository looks exactly like a missing one.
                raise RepoNotFound(m["tenant"], m["repo"])
            if not grant.write and _pushes(request, m["rest"] or "/"):
                raise AccessDenied("This token is read-only: it cannot push.")
        except TreadleError as exc:
            return text_error(exc)
        request.tenant = grant.tenant
        return self.handle(request, grant.tenant, m["repo"], m["rest"] or "/")

    def handle(self, request: Request, tenant: str, repo: str, rest_path: str) -> Response:
        """Serve `<repo>.git/<rest_path>` of the (already authenticated) tenant."""
        path = rest_path.strip("/")
        try:
            if path == "info/refs":
                if request.method not in ("GET", "HEAD"):
                    return _refuse(405, f"{request.method} not allowed on info/refs")
                return self._advertise(request, tenant, repo)
            if path in _HANDLERS:
                if request.method != "POST":
                    return _refuse(405, f"{request.method} not allowed on {path}")
                return self._rpc(request, tenant, repo, path)
            raise NotFound(f"Not found: {path} (only the smart HTTP protocol is served)")
        except TreadleError as exc:
            return text_error(exc)

    def _advertise(self, request: Request, tenant: str, repo: str) -> Response:
        service = request.q("service")
        if service is None:
            return _refuse(403, "Treadle serves only the smart HTTP protocol (git >= 1.6.6)")
        handler_cls = _HANDLERS.get(service)
        if handler_cls is None:
            return _refuse(403, f"Unsupported service: {service}")
        out = BytesIO()
        proto = ReceivableProtocol(BytesIO().read, out.write)
        proto.write_pkt_line(b"# service=" + service.encode("ascii") + b"\n")
        proto.write_pkt_line(None)
        if _protocol_version(request) == 1:
            proto.write_pkt_line(b"version 1\n")
        with self._repos.open(tenant, repo) as opened:
            handler = handler_cls(
                _OneRepoBackend(opened), [repo], proto, stateless_rpc=True, advertise_refs=True
            )
            handler.handle()
        headers = {"content-type": f"application/x-{service}-advertisement", **_NO_CACHE}
        return Response(status=200, body=out.getvalue(), headers=headers)

    def _rpc(self, request: Request, tenant: str, repo: str, service: str) -> Response:
        content_type = (request.header("content-type") or "").split(";")[0].strip()
        if content_type != f"application/x-{service}-request":
            return _refuse(415, f"Content-Type must be application/x-{service}-request")
        encoding = (request.header("content-encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip"):
            return _refuse(415, f"Unsupported Content-Encoding: {encoding}")
        body = self._body(request, encoding)
        if len(body) > self._max_body:
            return _refuse(413, f"Request body exceeds {self._max_body} bytes")
        started = time.monotonic()
        out = BytesIO()
        proto = ReceivableProtocol(BytesIO(body).read, out.write)
        with self._repos.open(tenant, repo) as opened:
            handler = _HANDLERS[service](_OneRepoBackend(opened), [repo], proto, stateless_rpc=True)
            try:
                handler.handle()
            except GitProtocolError as exc:
                log.info("%s %s/%s: protocol error: %s", service, tenant, repo, exc)
                raise InvalidParameter(f"Git protocol error: {exc}") from None
        log.debug(
            "%s %s/%s: %d bytes in, %d out, %.1f ms",
            service,
            tenant,
            repo,
            len(body),
            out.tell(),
            (time.monotonic() - started) * 1000,
        )
        if self._used is not None:
            self._used(tenant, repo)
        headers = {"content-type": f"application/x-{service}-result", **_NO_CACHE}
        return Response(status=200, body=out.getvalue(), headers=headers)

    def _body(self, request: Request, encoding: str) -> bytes:
        """The request body, gunzipped if the client compressed it (at most one byte
        over the size limit, which the caller refuses)."""
        if encoding == "identity":
            return request.body
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            # Bounded: a small gzip body must not inflate into gigabytes.
            body = inflater.decompress(request.body, self._max_body + 1)
        except zlib.error as exc:
            raise InvalidParameter(f"Invalid gzip request body: {exc}") from None
        if len(body) <= self._max_body and not inflater.eof:
            raise InvalidParameter("Invalid gzip request body: truncated")
        return body
