"""Authentication and quota errors, each carrying the AWS error code and HTTP status.

The API layer maps any `TenancyError` generically from `aws_code` and `http_status`, so
a new refusal never needs a new line in the mapping table. Codes and statuses are the
ones Lambda (and the AWS front door) really return, because clients branch on them:
botocore retries 429 `TooManyRequestsException` and never retries a 403 signature error.
"""

from __future__ import annotations

from treadle.domain.errors import Throttled, TreadleError


class TenancyError(TreadleError):
    aws_code = "ServiceException"
    http_status = 500


class AuthError(TenancyError):
    """The request is not authenticated; it did not reach any tenant resource."""


class MissingAuthenticationToken(AuthError):
    """No credentials at all (no Authorization header, no presigned query)."""

    aws_code = "MissingAuthenticationTokenException"
    http_status = 403

    def __init__(self, message: str = "Missing Authentication Token") -> None:
        super().__init__(message)


class IncompleteSignature(AuthError):
    """Credentials are present but malformed (AWS answers 400 for these)."""

    aws_code = "IncompleteSignatureException"
    http_status = 400


class UnrecognizedClient(AuthError):
    """Unknown or inactive access key, disabled tenant, or an STS token we do not issue."""

    aws_code = "UnrecognizedClientException"
    http_status = 403

    def __init__(
        self, message: str = "The security token included in the request is invalid."
    ) -> None:
        super().__init__(message)


class InvalidSignature(AuthError):
    """The signature does not verify with the key's secret (or signs too little)."""

    aws_code = "InvalidSignatureException"
    http_status = 403


class SignatureExpired(InvalidSignature):
    """The signed date is outside the accepted clock skew (or past a presign's expiry)."""


class ReplayedRequest(InvalidSignature):
    """The same signed request was already accepted once within its validity window."""


class BasicAuthRequired(AuthError):
    """Git over HTTP: 401 plus `WWW-Authenticate` makes git ask for (or send) credentials."""

    aws_code = "UnrecognizedClientException"
    http_status = 401
    www_authenticate = 'Basic realm="treadle", charset="UTF-8"'


class QuotaExceeded(TenancyError):
    """A tenant quota refuses the request."""


class RateExceeded(QuotaExceeded, Throttled):
    """Lambda's throttle: retryable; `reason` is one of Lambda's `ThrottleReason` values."""

    aws_code = "TooManyRequestsException"
    http_status = 429

    def __init__(self, message: str, *, reason: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class CodeStorageExceeded(QuotaExceeded):
    aws_code = "CodeStorageExceededException"
    http_status = 400


class ServiceQuotaExceeded(QuotaExceeded):
    """Lambda's own code for "the request would exceed a service quota" (HTTP 402)."""

    aws_code = "ServiceQuotaExceededException"
    http_status = 402


class AccessDenied(AuthError):
    """Authenticated, but this principal may not call this operation."""

    aws_code = "AccessDeniedException"
    http_status = 403
