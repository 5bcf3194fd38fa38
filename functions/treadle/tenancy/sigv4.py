"""SigV4 verification of what boto3 and the AWS CLI send, byte for byte as botocore signs.

The canonical request is rebuilt from our `Request` as `botocore.auth.SigV4Auth` builds it:
URI `quote(remove_dot_segments(path), safe="/~")` over the path *as sent*, already
percent-encoded, so Lambda's ARN segment `arn%3Aaws...` is encoded again (`%253A`): non-S3
services double-encode. Query pairs decoded, re-encoded with `quote(safe="-_.~")`, sorted
(presigned: without `X-Amz-Signature`). Exactly the `SignedHeaders`, whitespace collapsed.
Payload: `x-amz-content-sha256` if sent (checked against the body), else the body's SHA-256.
The primitives are in `treadle.tenancy.sigv4_canonical`.

Freshness: the signed date must be within `max_skew_s` of the server clock both ways (a
presigned URL: from its date minus the skew to its date plus X-Amz-Expires). Replay: see
`treadle.tenancy.replay`. Caveat, measured with botocore 1.44: it signs `host`,
`x-amz-date` and the operation's own headers only (`amz-sdk-invocation-id` and
`amz-sdk-request` come after signing) and the date has one-second resolution, so two
identical calls in the same second (polling, `invoke` of one payload in a loop) or a retry
in the same second carry one signature, and the replay guard refuses the second. The API
layer calls `release_replay` on retryable responses (429, 5xx) so retries still work.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime

from treadle.tenancy.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    SignatureExpired,
    UnrecognizedClient,
)
from treadle.tenancy.ports import SecretLookup
from treadle.tenancy.replay import ReplayGuard
from treadle.tenancy.sigv4_canonical import (
    ALGORITHM,
    HttpRequest,
    SignedParts,
    canonical_request,
    expected_signature,
)

SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600  # AWS's limit for presigned URLs
_TIMESTAMP_RE = re.compile(r"\d{8}T\d{6}Z", re.ASCII)
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
_EXPIRES_RE = re.compile(r"\d{1,7}", re.ASCII)
# Added by AWS front doors (CloudFront, API Gateway) after the client signed; every
# other x-amz-* header must be signed, so none can be slipped into a signed request.
_PROXY_ADDED = frozenset({"x-amz-cf-id", "x-amz-cf-pop", "x-amz-apigw-id"})


# -- parsing ---------------------------------------------------------------------------


def _credential(value: str) -> tuple[str, str, str, str]:
    fields = value.split("/")
    if len(fields) != 5 or not all(fields) or fields[4] != "aws4_request":
        raise IncompleteSignature(
            f"Credential should be of the form 'KEY/YYYYMMDD/region/service/aws4_request': "
            f"'{value}'."
        )
    return fields[0], fields[1], fields[2], fields[3]


def _signed_header_names(value: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not all(names) or any(n != n.strip().lower() for n in names):
        raise IncompleteSignature(f"Malformed SignedHeaders: '{value}'.")
    return names


def _header_timestamp(headers: Mapping[str, str]) -> tuple[str, str] | None:
    amz = headers.get("x-amz-date")
    if amz is not None:
        return amz.strip(), "x-amz-date"
    date = headers.get("date")
    if date is None:
        return None
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        raise IncompleteSignature(f"Invalid Date header: '{date}'.") from None
    if parsed.tzinfo is None:  # "-0000" parses naive; HTTP dates are GMT
        parsed = parsed.replace(tzinfo=UTC)
    return time.strftime(SIGV4_TIMESTAMP, time.gmtime(parsed.timestamp())), "date"


def _from_header(request: HttpRequest, auth: str) -> SignedParts:
    algorithm, _, rest = auth.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(f"Unsupported authorization type: '{algorithm}'.")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, value = item.strip().partition("=")
        if not eq or name in fields:
            raise IncompleteSignature(f"Malformed Authorization header component: '{item}'.")
        fields[name] = value
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    stamp = _header_timestamp(request.headers)
    if stamp is None:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems or stamp is None:
        raise IncompleteSignature(" ".join(problems))
    key_id, date, region, service = _credential(fields["Credential"])
    return SignedParts(
        access_key_id=key_id,
        scope_date=date,
        region=region,
        service=service,
        signed_headers=_signed_header_names(fields["SignedHeaders"]),
        signature=fields["Signature"],
        timestamp=stamp[0],
        date_header=stamp[1],
        expires_s=None,
    )


def _from_query(query: Mapping[str, Sequence[str]]) -> SignedParts:
    def one(name: str) -> str:
        values = query.get(name)
        if not values or len(values) != 1 or not values[0]:
            raise IncompleteSignature(f"Query-string authentication requires '{name}' once.")
        return values[0]

    if one("X-Amz-Algorithm") != ALGORITHM:
        raise IncompleteSignature("X-Amz-Algorithm only supports 'AWS4-HMAC-SHA256'.")
    key_id, date, region, service = _credential(one("X-Amz-Credential"))
    raw_expires = one("X-Amz-Expires")
    if not _EXPIRES_RE.fullmatch(raw_expires) or not 1 <= int(raw_expires) <= MAX_PRESIGN_EXPIRES_S:
        raise IncompleteSignature(
            f"X-Amz-Expires must be between 1 and {MAX_PRESIGN_EXPIRES_S} seconds."
        )
    return SignedParts(
        access_key_id=key_id,
        scope_date=date,
        region=region,
        service=service,
        signed_headers=_signed_header_names(one("X-Amz-SignedHeaders")),
        signature=one("X-Amz-Signature"),
        timestamp=one("X-Amz-Date"),
        date_header=None,
        expires_s=int(raw_expires),
    )


def parse_signature(request: HttpRequest) -> SignedParts:
    auth = request.headers.get("authorization")
    presigned = "X-Amz-Algorithm" in request.query or "X-Amz-Signature" in request.query
    if auth and presigned:
        raise IncompleteSignature(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or "
            "the Authorization header should be specified."
        )
    if presigned:
        return _from_query(request.query)
    if not auth:
        raise MissingAuthenticationToken()
    return _from_header(request, auth)


# -- freshness --------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)  # strptime is slow; one timestamp signs a second's requests
def _epoch_ms(timestamp: str) -> int:
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise IncompleteSignature(f"Invalid date '{timestamp}': expected YYYYMMDDTHHMMSSZ.")
    try:
        return calendar.timegm(time.strptime(timestamp, SIGV4_TIMESTAMP)) * 1000
    except ValueError:
        raise IncompleteSignature(f"Invalid date '{timestamp}'.") from None


def _stamp(ms: int) -> str:
    return time.strftime(SIGV4_TIMESTAMP, time.gmtime(ms // 1000))


def check_freshness(parts: SignedParts, now_ms: int, max_skew_s: int) -> int:
    """Refuse a stale or future date; return the last ms the signature stays valid."""
    signed_ms = _epoch_ms(parts.timestamp)
    skew_ms = max_skew_s * 1000
    span = f"{max_skew_s // 60} min." if max_skew_s % 60 == 0 else f"{max_skew_s} s."
    if signed_ms - skew_ms > now_ms:
        raise SignatureExpired(
            f"Signature not yet current: {parts.timestamp} is still later than "
            f"{_stamp(now_ms + skew_ms)} ({_stamp(now_ms)} + {span})"
        )
    if parts.expires_s is not None:
        valid_until = signed_ms + parts.expires_s * 1000
        if now_ms > valid_until:
            raise SignatureExpired(
                f"Signature expired: {parts.timestamp} + {parts.expires_s} s is earlier "
                f"than {_stamp(now_ms)}."
            )
        return valid_until
    if signed_ms + skew_ms < now_ms:
        raise SignatureExpired(
            f"Signature expired: {parts.timestamp} is now earlier than "
            f"{_stamp(now_ms - skew_ms)} ({_stamp(now_ms)} - {span})"
        )
    return signed_ms + skew_ms


PROCESS_REPLAY_GUARD = ReplayGuard()


def release_replay(
    tenant: str, request: HttpRequest, replay_guard: ReplayGuard = PROCESS_REPLAY_GUARD
) -> None:
    """Call when the response to an accepted request is retryable (429, 5xx)."""
    try:
        parts = parse_signature(request)
    except (IncompleteSignature, MissingAuthenticationToken):
        return
    replay_guard.release(tenant, parts.access_key_id, parts.signature)


# -- verification -----------------------------------------------------------------------


def _payload_hash(request: HttpRequest, allow_unsigned_payload: bool) -> str:
    claimed = request.headers.get("x-amz-content-sha256")
    actual = hashlib.sha256(request.body).hexdigest()
    if claimed is None:
        return actual
    if claimed == UNSIGNED_PAYLOAD and allow_unsigned_payload:
        return claimed
    if not _HEX64_RE.fullmatch(claimed):
        raise InvalidSignature(f"Unsupported x-amz-content-sha256 value: '{claimed}'.")
    if not hmac.compare_digest(claimed.lower(), actual):
        raise InvalidSignature(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return claimed  # the client signed its own spelling of the digest


def _check_signed_headers(request: HttpRequest, parts: SignedParts) -> None:
    signed = set(parts.signed_headers)
    required = {"host"} | ({parts.date_header} if parts.date_header else set())
    unsigned = sorted(
        name
        for name in request.headers
        if name.startswith("x-amz-") and name not in _PROXY_ADDED and name not in signed
    )
    missing = sorted(required - signed)
    if missing:
        raise InvalidSignature(f"Headers {missing} must be signed.")
    if unsigned:
        raise InvalidSignature(
            f"There were headers present in the request which were not signed: {unsigned}."
        )


def verify_sigv4(
    request: HttpRequest,
    lookup_secret: SecretLookup,
    now_ms: int,
    max_skew_s: int = 300,
    *,
    replay_guard: ReplayGuard | None = PROCESS_REPLAY_GUARD,
    services: Collection[str] | None = None,
    allow_unsigned_payload: bool = False,
) -> tuple[str, str]:
    """Authenticate a SigV4 request; return (tenant account id, access key id).

    `services`, when given, are the signing names accepted in the credential scope.
    `replay_guard=None` disables replay refusal (only for tests and tools).
    """
    parts = parse_signature(request)
    if "x-amz-security-token" in request.headers or "X-Amz-Security-Token" in request.query:
        # Session tokens are STS's; Treadle issues long-term keys only.
        raise UnrecognizedClient()
    found = lookup_secret(parts.access_key_id)
    if found is None:
        raise UnrecognizedClient()
    valid_until_ms = check_freshness(parts, now_ms, max_skew_s)
    if parts.scope_date != parts.timestamp[:8]:
        raise InvalidSignature(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{parts.scope_date}' != '{parts.timestamp[:8]}', from "
            f"'{parts.timestamp}'."
        )
    if services is not None and parts.service not in services:
        raise InvalidSignature(
            f"Credential should be scoped to correct service: '{sorted(services)[0]}'."
        )
    _check_signed_headers(request, parts)
    canonical = canonical_request(request, parts, _payload_hash(request, allow_unsigned_payload))
    expected = expected_signature(found.secret, parts, canonical)
    if not hmac.compare_digest(expected.encode(), parts.signature.encode()):
        raise InvalidSignature(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details."
        )
    if replay_guard is not None:
        replay_guard.check_and_record(
            found.tenant, parts.access_key_id, parts.signature, valid_until_ms, now_ms
        )
    return found.tenant, parts.access_key_id
