"""Console sessions: a signed cookie naming the key that logged in, plus a CSRF token.

The cookie holds no secret: the access key id, a fingerprint of the key's secret (so a
rotated key logs its sessions out) and a random CSRF token, signed with a key derived
from the platform's token secret (itsdangerous, timestamped: sessions expire). Every
request re-checks the key (`Sessions.principal`): a disabled key or tenant logs out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from treadle.tenancy.ports import KeySecret

COOKIE = "treadle_console"
LOGIN_COOKIE = "treadle_console_login"
MAX_AGE_S = 8 * 3600
LOGIN_MAX_AGE_S = 3600


@dataclass(frozen=True)
class Session:
    key_id: str
    tenant: str | None  # None: the platform admin
    csrf: str

    @property
    def admin(self) -> bool:
        return self.tenant is None


class Sessions:
    def __init__(
        self,
        token_secret: bytes,
        *,
        tenant_keys: Callable[[str], KeySecret | None],
        admin_key: tuple[str, str],
    ) -> None:
        # A key of its own: a session cookie can never pass for a checkpoint token.
        key = hmac.new(token_secret, b"treadle-console-session", hashlib.sha256).hexdigest()
        self._fp_key = hmac.new(token_secret, b"treadle-console-fp", hashlib.sha256).digest()
        self._cookie = URLSafeTimedSerializer(key, salt="console-session")
        self._login = URLSafeTimedSerializer(key, salt="console-login")
        self._tenant_keys = tenant_keys
        self._admin_id, self._admin_secret = admin_key

    def _fingerprint(self, secret: str) -> str:
        return hmac.new(self._fp_key, secret.encode(), hashlib.sha256).hexdigest()[:32]

    def _resolve(self, key_id: str) -> tuple[str | None, str] | None:
        """(tenant or None for the admin, secret) of an active key, else None."""
        if key_id and hmac.compare_digest(key_id, self._admin_id):
            return None, self._admin_secret
        found = self._tenant_keys(key_id)  # only active keys of enabled tenants
        return (found.tenant, found.secret) if found is not None else None

    def login(self, key_id: str, secret: str) -> tuple[Session, str] | None:
        """A new session and its cookie value, or None when the pair is wrong."""
        resolved = self._resolve(key_id.strip())
        if resolved is None or not hmac.compare_digest(resolved[1], secret.strip()):
            return None
        session = Session(key_id.strip(), resolved[0], secrets.token_urlsafe(24))
        value = self._cookie.dumps(
            {"k": session.key_id, "f": self._fingerprint(resolved[1]), "c": session.csrf}
        )
        return session, value

    def principal(self, cookie: str | None) -> Session | None:
        """The session of a cookie, if it is genuine, fresh and its key still active."""
        if not cookie:
            return None
        try:
            data = self._cookie.loads(cookie, max_age=MAX_AGE_S)
        except BadSignature:  # expired ones too (SignatureExpired is a BadSignature)
            return None
        if not isinstance(data, dict):
            return None
        key_id, fp, csrf = data.get("k"), data.get("f"), data.get("c")
        if not (isinstance(key_id, str) and isinstance(fp, str) and isinstance(csrf, str)):
            return None
        resolved = self._resolve(key_id)
        if resolved is None or not hmac.compare_digest(self._fingerprint(resolved[1]), fp):
            return None
        return Session(key_id, resolved[0], csrf)

    # The login form has no session yet: its CSRF token rides in a short-lived cookie
    # of its own (double submit), so a cross-site form cannot log a victim in.

    def login_token(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(24)
        return token, self._login.dumps(token)

    def login_token_ok(self, cookie: str | None, submitted: str) -> bool:
        if not cookie or not submitted:
            return False
        try:
            token = self._login.loads(cookie, max_age=LOGIN_MAX_AGE_S)
        except BadSignature:
            return False
        return isinstance(token, str) and hmac.compare_digest(token, submitted)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted or "")


def cookie_header(
    name: str, value: str, *, secure: bool, max_age: int, path: str = "/console"
) -> str:
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly"]
    parts.append("SameSite=Strict")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def read_cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
