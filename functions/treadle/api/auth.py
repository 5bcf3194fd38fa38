"""Who is calling: SigV4 (boto3, the AWS CLI) or HTTP Basic (git, curl) to a principal.

Three kinds of principal hold keys: a tenant (its own key pairs), a tenant's sandbox
(derived keys, `SandboxKeys`) and the platform admin (one key pair from the settings).
What each may reach is decided here too, so every route is covered by one policy:
- the Lambda-compatible surface and CloudWatch Logs: tenants; sandboxes only the
  checkpoint API (as the tenant execution role on AWS);
- `/v1/tenants`: the admin only; the rest of `/v1` and Git: tenants only, except
  that a sandbox may, for its own tenant, create a repository (`POST /v1/repos`), mint
  a Git token for one (`POST /v1/repos/{name}/tokens`), open a facet (`POST
  /v1/facets/{name}`) and send an event to one of its executions (`SANDBOX_V1`); Git
  also takes a repository token (user `x-token`, password the token), which opens that
  one repository only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from treadle.api.http import Request
from treadle.artifacts.ports import RepoToken
from treadle.artifacts.tokens import TOKEN_USER
from treadle.domain.audit import PrincipalKind
from treadle.tenancy.basic import REFUSED, parse_basic, verify_basic
from treadle.tenancy.errors import AccessDenied, BasicAuthRequired, MissingAuthenticationToken
from treadle.tenancy.ports import KeySecret, SecretLookup
from treadle.tenancy.sandbox_keys import SandboxKeys
from treadle.tenancy.sigv4 import verify_sigv4

log = logging.getLogger(__name__)

ADMIN = "admin"
_SANDBOX_PATHS = re.compile(r"^/2025-12-01/durable-executions/[^/]+/(checkpoint|state)/?$")
# What a sandbox key may call on `/v1` (POST only), always as its own tenant: create a
# repository (an agent's, a session's), mint a Git token for one, open (make) a facet,
# send an event to an execution (by ARN, or by function and execution name).
SANDBOX_V1 = re.compile(
    r"^/v1/("
    r"repos(/[A-Za-z0-9._-]{1,100}/tokens)?"
    r"|facets/[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
    r"|executions/[^/]+/events"
    r"|functions/[A-Za-z0-9_-]{1,64}/executions/[A-Za-z0-9_-]{1,64}/events"
    r")/?$"
)
TokenLookup = Callable[[str], RepoToken | None]


class Kind(StrEnum):
    TENANT = "tenant"
    SANDBOX = "sandbox"
    ADMIN = "admin"


@dataclass(frozen=True)
class GitGrant:
    """What Git credentials open: a tenant's repositories (a key), or one of them (a
    token), for reading only or for pushing too."""

    tenant: str
    repo: str | None = None  # None: every repository of the tenant
    write: bool = True


@dataclass(frozen=True)
class Principal:
    kind: Kind
    tenant: str  # the account id; empty for the admin
    access_key_id: str


class Authenticator:
    def __init__(
        self,
        *,
        tenant_keys: SecretLookup,
        sandbox_keys: SandboxKeys,
        admin_key: tuple[str, str],
        now_ms: Callable[[], int],
        max_skew_s: int = 300,
        repo_tokens: TokenLookup = lambda _token: None,
        tenant_enabled: Callable[[str], bool] = lambda _tenant: True,
    ) -> None:
        self._repo_tokens = repo_tokens
        self._tenant_enabled = tenant_enabled
        self._tenant_keys = tenant_keys
        self._sandbox_keys = sandbox_keys
        self._admin_id, self._admin_secret = admin_key
        self._now_ms = now_ms
        self._max_skew_s = max_skew_s

    def _lookup(self, access_key_id: str) -> KeySecret | None:
        if access_key_id == self._admin_id:
            return KeySecret(ADMIN, self._admin_secret)
        return self._sandbox_keys.lookup(access_key_id) or self._tenant_keys(access_key_id)

    def _principal(self, tenant: str, access_key_id: str) -> Principal:
        if access_key_id == self._admin_id:
            return Principal(Kind.ADMIN, "", access_key_id)
        if self._sandbox_keys.lookup(access_key_id) is not None:
            return Principal(Kind.SANDBOX, tenant, access_key_id)
        return Principal(Kind.TENANT, tenant, access_key_id)

    def sigv4(self, request: Request) -> Principal:
        # Replays within the skew window are accepted, as AWS does: SDK retries and
        # pollers legitimately resend identical signed requests. Old ones are refused
        # by the date check.
        tenant, key_id = verify_sigv4(
            request, self._lookup, self._now_ms(), self._max_skew_s, replay_guard=None
        )
        return _noted(request, self._principal(tenant, key_id))

    def basic(self, request: Request) -> Principal:
        header = request.header("authorization")
        tenant = verify_basic(header, self._lookup)
        return _noted(request, self._principal(tenant, parse_basic(header)[0]))

    def any(self, request: Request) -> Principal:
        """SigV4 when the request is signed, else Basic (curl -u KEY:SECRET)."""
        auth = request.header("authorization") or ""
        if auth.startswith("AWS4-") or "X-Amz-Signature" in request.query:
            return self.sigv4(request)
        if not auth:
            raise MissingAuthenticationToken()
        return self.basic(request)

    # -- policy ----------------------------------------------------------------------

    def lambda_tenant(self, request: Request) -> str:
        principal = self.sigv4(request)
        if principal.kind is Kind.TENANT:
            return principal.tenant
        if principal.kind is Kind.SANDBOX and _SANDBOX_PATHS.match(request.path):
            return principal.tenant
        raise AccessDenied(
            f"The key {principal.access_key_id} is not authorized to perform this operation."
        )

    def sandbox_only(self, request: Request, tenant: str) -> None:
        """A request from inside `tenant`'s network namespace: its sandbox key, to the
        checkpoint API, nothing else (not even the tenant's own keys: code that holds
        them reaches the public endpoint, which the namespace has no route to)."""
        principal = self.sigv4(request)
        allowed = (
            principal.kind is Kind.SANDBOX
            and principal.tenant == tenant
            and _SANDBOX_PATHS.match(request.path) is not None
            and not request.header("x-amz-target")
        )
        if not allowed:
            raise AccessDenied(
                f"The key {principal.access_key_id} is not authorized to perform this "
                "operation from a sandbox."
            )

    def sandbox_v1(self, request: Request, tenant: str) -> None:
        """From inside `tenant`'s namespace on `/v1`: its sandbox key, on `SANDBOX_V1`."""
        principal = self.any(request)
        if not (
            principal.kind is Kind.SANDBOX
            and principal.tenant == tenant
            and request.method == "POST"
            and SANDBOX_V1.match(request.path)
        ):
            raise AccessDenied(
                f"The key {principal.access_key_id} is not authorized to perform this "
                "operation from a sandbox."
            )

    def v1_tenant(self, request: Request) -> str:
        principal = self.any(request)
        if principal.kind is Kind.TENANT:
            return principal.tenant
        if (
            principal.kind is Kind.SANDBOX
            and request.method == "POST"
            and SANDBOX_V1.match(request.path)
        ):
            return principal.tenant
        raise AccessDenied("This operation needs a tenant's access key.")

    def v1_admin(self, request: Request) -> None:
        if self.any(request).kind is not Kind.ADMIN:
            raise AccessDenied("Managing tenants needs the platform admin credential.")

    def v1_admin_or_tenant(self, request: Request, account: str) -> None:
        """The admin, or `account`'s own key (another tenant's is refused, as anyone's)."""
        principal = self.any(request)
        if principal.kind is Kind.ADMIN:
            return
        if principal.kind is Kind.TENANT and principal.tenant == account:
            request.tenant = account
            return
        raise AccessDenied("Only the platform admin or the tenant itself may read this.")

    def git(self, request: Request) -> GitGrant:
        """A tenant's key (all its repositories) or a repository token (one)."""
        user, _password = parse_basic(request.header("authorization"))
        if user == TOKEN_USER:
            return self.git_token(request)
        principal = self.basic(request)
        if principal.kind is not Kind.TENANT:
            raise AccessDenied("Git needs a tenant's access key or a repository token.")
        return GitGrant(principal.tenant)

    def git_token(self, request: Request, only_tenant: str | None = None) -> GitGrant:
        """A repository token only (of `only_tenant`'s, from its sandbox endpoint):
        anything else is refused like a wrong password."""
        user, password = parse_basic(request.header("authorization"))
        token = self._repo_tokens(password) if user == TOKEN_USER else None
        if token is None or not self._tenant_enabled(token.tenant):
            raise BasicAuthRequired(REFUSED)
        if only_tenant is not None and token.tenant != only_tenant:
            raise BasicAuthRequired(REFUSED)
        request.access_key_id = token.token_id
        request.principal_kind = PrincipalKind.REPO_TOKEN
        return GitGrant(token.tenant, token.repo, write=token.access == "write")


_KINDS = {
    Kind.TENANT: PrincipalKind.TENANT_KEY,
    Kind.SANDBOX: PrincipalKind.SANDBOX_KEY,
    Kind.ADMIN: PrincipalKind.ADMIN,
}


def _noted(request: Request, principal: Principal) -> Principal:
    """The verified caller, on the request: the audit log's "who"."""
    request.access_key_id = principal.access_key_id
    request.principal_kind = _KINDS[principal.kind]
    return principal
