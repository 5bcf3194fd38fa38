"""Credentials handed to tenant code in the sandbox: derived, not stored.

A Lambda sandbox gets its execution role's credentials; ours get a key pair derived
from the platform secret and the tenant's account id. The key id carries the account
id (8 base32 characters hold any 12-digit number) and an HMAC tag, so verifying one
needs no table and survives restarts, and the secret is recomputed, never written down.
The key is a principal of its own (`SANDBOX_PRINCIPAL`): the API lets it reach only the
checkpoint API of its tenant, as the tenant execution role does on AWS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from treadle.tenancy.ports import KeySecret

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_ACCOUNT_CHARS = 8  # 32**8 > 10**12
_TAG_CHARS = 8


def _b32_int(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def _int_b32(text: str) -> int | None:
    value = 0
    for ch in text:
        digit = _ALPHABET.find(ch)
        if digit < 0:
            return None
        value = value * 32 + digit
    return value


class SandboxKeys:
    def __init__(self, platform_secret: bytes) -> None:
        # A key of its own, so a leaked sandbox secret says nothing of checkpoint tokens.
        self._key = hmac.new(platform_secret, b"treadle-sandbox-keys", hashlib.sha256).digest()
        # Asked on every invocation and every checkpoint signed with a sandbox key: the
        # three HMACs are kept per tenant (one entry per real tenant; lookup() only
        # fills it for key ids whose tag verified).
        self._pairs: dict[str, tuple[str, str]] = {}

    def _tag(self, account: str) -> str:
        digest = hmac.new(self._key, b"id:" + account.encode(), hashlib.sha256).digest()
        return base64.b32encode(digest).decode()[:_TAG_CHARS]

    def _secret(self, account: str) -> str:
        digest = hmac.new(self._key, b"secret:" + account.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest, altchars=b"ab").decode()[:40]

    def for_tenant(self, account: str) -> tuple[str, str]:
        """(access key id, secret) for the tenant's sandboxes."""
        pair = self._pairs.get(account)
        if pair is None:
            key_id = "AKIA" + _b32_int(int(account), _ACCOUNT_CHARS) + self._tag(account)
            pair = self._pairs[account] = (key_id, self._secret(account))
        return pair

    def env(self, account: str) -> dict[str, str]:
        """The credential variables of the tenant's sandboxes."""
        key_id, secret = self.for_tenant(account)
        return {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}

    def lookup(self, access_key_id: str) -> KeySecret | None:
        """The tenant and secret of a sandbox key id; None for any other key id."""
        if len(access_key_id) != 4 + _ACCOUNT_CHARS + _TAG_CHARS or not access_key_id.startswith(
            "AKIA"
        ):
            return None
        number = _int_b32(access_key_id[4 : 4 + _ACCOUNT_CHARS])
        if number is None or number >= 10**12:
            return None
        account = f"{number:012d}"
        pair = self._pairs.get(account)
        expected = pair[0][4 + _ACCOUNT_CHARS :] if pair else self._tag(account)
        if not hmac.compare_digest(expected, access_key_id[4 + _ACCOUNT_CHARS :]):
            return None
        return KeySecret(account, self.for_tenant(account)[1])
