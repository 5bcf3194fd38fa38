"""Short-lived Git tokens scoped to one repository: mint, list, revoke, verify.

A token is `<id>.<secret>`, used as the password of HTTP Basic with the user `x-token`
(`git clone http://x-token:<token>@host/git/<account>/<repo>.git`). The id finds the
record in one key read; the secret (240 random bits) is checked against its SHA-256:
a slow hash would add nothing against guessing a secret that long, and verifying runs
on every Git request.

Tokens die with their repository: deleting it deletes them first, so a repository
re-created under the same name is not opened by its predecessor's tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable

from treadle.artifacts.ports import RefStore, RepoNotFound, RepoToken, TokenStore
from treadle.domain.errors import InvalidParameter

log = logging.getLogger(__name__)

TOKEN_USER = "x-token"
ACCESS_LEVELS = ("read", "write")
DEFAULT_TTL_S = 3600
MAX_TTL_S = 7 * 24 * 3600
_TOKEN = re.compile(r"(?P<id>rt[0-9a-f]{24})\.(?P<secret>[A-Za-z0-9_-]{40})")
# Compared against when the id is unknown, so that case costs the same comparison.
_DUMMY_HASH = "0" * 64


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class RepoTokens:
    def __init__(
        self,
        store: TokenStore,
        refs: RefStore,
        *,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self._refs = refs
        self._now_ms = now_ms

    def mint(self, tenant: str, repo: str, access: str, ttl_s: int) -> tuple[RepoToken, str]:
        """A new token and its secret string (shown once, never stored)."""
        if access not in ACCESS_LEVELS:
            raise InvalidParameter(f"access must be 'read' or 'write', not {access!r}.")
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidParameter(
                f"ttlSeconds must be an integer from 1 to {MAX_TTL_S}, not {ttl_s!r}."
            )
        if not self._refs.repo_exists(tenant, repo):
            raise RepoNotFound(tenant, repo)
        secret = secrets.token_urlsafe(30)
        now = self._now_ms()
        token = RepoToken(
            token_id="rt" + secrets.token_hex(12),
            tenant=tenant,
            repo=repo,
            access=access,
            secret_hash=_hash(secret),
            created_ms=now,
            expires_ms=now + ttl_s * 1000,
        )
        self._store.put(token)
        log.info("minted %s token %s for %s/%s", access, token.token_id, tenant, repo)
        return token, f"{token.token_id}.{secret}"

    def list(self, tenant: str, repo: str) -> list[RepoToken]:
        """The repository's live tokens (expired ones are not shown)."""
        if not self._refs.repo_exists(tenant, repo):
            raise RepoNotFound(tenant, repo)
        now = self._now_ms()
        return [t for t in self._store.list(tenant, repo) if t.expires_ms > now]

    def revoke(self, tenant: str, repo: str, token_id: str) -> None:
        if not self._refs.repo_exists(tenant, repo):
            raise RepoNotFound(tenant, repo)
        self._store.delete(tenant, repo, token_id)
        log.info("revoked token %s of %s/%s", token_id, tenant, repo)

    def forget_repo(self, tenant: str, repo: str) -> None:
        self._store.delete_repo(tenant, repo)

    def verify(self, token: str) -> RepoToken | None:
        """The live token this string is; None for a malformed, unknown, wrong, expired
        or revoked one (callers refuse all of them alike)."""
        m = _TOKEN.fullmatch(token)
        if m is None:
            return None
        found = self._store.get(m["id"])
        expected = found.secret_hash if found is not None else _DUMMY_HASH
        if not hmac.compare_digest(expected, _hash(m["secret"])) or found is None:
            return None
        if found.expires_ms <= self._now_ms():
            return None
        return found
