"""SigV4's canonical request and signature, as `botocore.auth.SigV4Auth` computes them.

Reimplemented rather than imported so that serving never depends on botocore internals;
`tests/unit/test_sigv4.py` pins each function to botocore's output. Verification (parsing
what the client sent, freshness, replay) is `treadle.tenancy.sigv4`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from treadle.tenancy.errors import InvalidSignature

ALGORITHM = "AWS4-HMAC-SHA256"


class HttpRequest(Protocol):
    """The parts of `treadle.api.http.Request` that SigV4 covers (read-only)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...  # raw, still percent-encoded, as sent
    @property
    def query(self) -> Mapping[str, Sequence[str]]: ...  # decoded
    @property
    def headers(self) -> Mapping[str, str]: ...  # lower-case names
    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True)
class SignedParts:
    """What the client claims: parsed from the Authorization header or a presigned URL."""

    access_key_id: str
    scope_date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # YYYYMMDDTHHMMSSZ, what the string to sign carries
    date_header: str | None  # "x-amz-date" / "date" for header auth, None if presigned
    expires_s: int | None  # presigned only

    @property
    def scope(self) -> str:
        return f"{self.scope_date}/{self.region}/{self.service}/aws4_request"


def remove_dot_segments(path: str) -> str:
    """botocore.utils.remove_dot_segments: RFC 3986 5.2.4, plus collapsing '//'."""
    if not path:
        return ""
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if out:
                out.pop()
        elif seg and seg != ".":
            out.append(seg)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and out else ""
    return first + "/".join(out) + last


def canonical_uri(raw_path: str) -> str:
    # botocore.auth.SigV4Auth._normalize_url_path over utils.normalize_url_path.
    return quote(remove_dot_segments(raw_path) if raw_path else "/", safe="/~")


def canonical_query(query: Mapping[str, Sequence[str]], *, presigned: bool = False) -> str:
    pairs = [
        (quote(name, safe="-_.~"), quote(value, safe="-_.~"))
        for name, values in query.items()
        if not (presigned and name == "X-Amz-Signature")
        for value in values
    ]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_headers(headers: Mapping[str, str], names: Sequence[str]) -> str:
    lines = []
    for name in names:
        value = headers.get(name)
        if value is None:
            raise InvalidSignature(f"Signed header '{name}' is not present in the request.")
        lines.append(f"{name}:{' '.join(value.split())}")
    return "\n".join(lines) + "\n"


def canonical_request(request: HttpRequest, parts: SignedParts, payload_hash: str) -> str:
    return "\n".join(
        [
            request.method.upper(),
            canonical_uri(request.path),
            canonical_query(request.query, presigned=parts.expires_s is not None),
            canonical_headers(request.headers, parts.signed_headers),
            ";".join(parts.signed_headers),
            payload_hash,
        ]
    )


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The key a scope's requests are signed with: four HMACs, the same all day for one
    key, so kept (as clients keep it): every request of a key on a day needs it."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def expected_signature(secret: str, parts: SignedParts, canonical: str) -> str:
    string_to_sign = "\n".join(
        [ALGORITHM, parts.timestamp, parts.scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = signing_key(secret, parts.scope_date, parts.region, parts.service)
    return hmac.digest(key, string_to_sign.encode(), "sha256").hex()
