"""`/git/<tenant>/<repo>.git/...`: Git smart HTTP behind Basic auth with a tenant key."""

from __future__ import annotations

import re

from treadle.api.auth import Authenticator
from treadle.api.errors import text_error
from treadle.api.http import Request, Response
from treadle.artifacts.git_http import GitHttp
from treadle.artifacts.ports import RepoNotFound
from treadle.domain.errors import NotFound

_PATH = re.compile(r"^/git/(?P<tenant>\d{12})/(?P<repo>[A-Za-z0-9._-]{1,100})\.git(?P<rest>/.*)?$")


class GitRoutes:
    def __init__(self, git: GitHttp, auth: Authenticator) -> None:
        self.git = git
        self.auth = auth

    def __call__(self, request: Request) -> Response:
        # Credentials first: git sends a request without them, expects 401 and retries.
        tenant = self.auth.git_tenant(request)
        m = _PATH.match(request.path)
        if m is None:
            return text_error(NotFound("Not a repository URL: use /git/<account id>/<name>.git"))
        if m["tenant"] != tenant:
            # Another tenant's repository looks exactly like a missing one.
            return text_error(RepoNotFound(m["tenant"], m["repo"]))
        request.tenant = tenant
        return self.git.handle(request, tenant, m["repo"], m["rest"] or "/")
