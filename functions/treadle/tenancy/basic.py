"""HTTP Basic authentication for Git over HTTP: user = access key id, password = secret.

Git sends Basic credentials only after a 401 with `WWW-Authenticate: Basic`, so every
refusal here is `BasicAuthRequired` (401, carrying that challenge). The messages do not
tell an unknown key from a wrong secret: unlike SigV4 (where AWS does tell), a password
prompt should not confirm which key ids exist.
"""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode

from treadle.tenancy.errors import BasicAuthRequired
from treadle.tenancy.ports import SecretLookup

# Compared against when the key is unknown, so that case costs the same comparison.
_DUMMY_SECRET = b"x" * 40
REFUSED = "Invalid access key id or secret access key."


def parse_basic(authorization_header: str | None) -> tuple[str, str]:
    """(user, password) from `Basic base64(user:password)`; BasicAuthRequired if absent."""
    if not authorization_header:
        raise BasicAuthRequired("Authentication required.")
    scheme, _, encoded = authorization_header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise BasicAuthRequired("Authentication required: use HTTP Basic.")
    try:
        decoded = b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise BasicAuthRequired("Malformed Basic credentials.") from None
    user, colon, password = decoded.partition(":")
    if not colon or not user:
        raise BasicAuthRequired("Malformed Basic credentials.")
    return user, password


def verify_basic(authorization_header: str | None, lookup_secret: SecretLookup) -> str:
    """The tenant account id of a valid key pair; BasicAuthRequired otherwise."""
    key_id, password = parse_basic(authorization_header)
    found = lookup_secret(key_id)
    expected = found.secret.encode() if found is not None else _DUMMY_SECRET
    matches = hmac.compare_digest(expected, password.encode("utf-8"))
    if found is None or not matches:
        raise BasicAuthRequired(REFUSED)
    return found.tenant
