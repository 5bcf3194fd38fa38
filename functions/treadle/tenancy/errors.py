"""Authentication and quota errors.

Like the domain's errors they know nothing of HTTP: `treadle.api.errors` maps each one to
the status and AWS error code Lambda (and the AWS front door) really return.
"""

from __future__ import annotations

from treadle.domain.errors import Throttled, TreadleError


class TenancyError(TreadleError):
    """A refusal by tenancy: authentication, authorization or a quota."""


class AuthError(TenancyError):
    """The request is not authenticated; it did not reach any tenant resource."""


class MissingAuthenticationToken(AuthError):
    """No credentials at all (no Authorization header, no presigned query)."""

    def __init__(self, message: str = "Missing Authentication Token") -> None:
        super().__init__(message)


class IncompleteSignature(AuthError):
    """Credentials are present but malformed (AWS answers these as a bad request)."""


class UnrecognizedClient(AuthError):
    """Unknown or inactive access key, disabled tenant, or an STS token we do not issue."""

    def __init__(
        self, message: str = "The security token included in the request is invalid."
    ) -> None:
        super().__init__(message)


class InvalidSignature(AuthError):
    """The signature does not verify with the key's secret (or signs too little)."""


class SignatureExpired(InvalidSignature):
    """The signed date is outside the accepted clock skew (or past a presign's expiry)."""


class ReplayedRequest(InvalidSignature):
    """The same signed request was already accepted once within its validity window."""


class BasicAuthRequired(AuthError):
    """Git over HTTP: the refusal that makes git ask for (or send) Basic credentials."""


class QuotaExceeded(TenancyError):
    """A tenant quota refuses the request."""


class RateExceeded(QuotaExceeded, Throttled):
    """Lambda's throttle: retryable; `reason` is one of Lambda's `ThrottleReason` values."""

    def __init__(self, message: str, *, reason: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class CodeStorageExceeded(QuotaExceeded):
    """The tenant's stored code would exceed its quota."""


class ServiceQuotaExceeded(QuotaExceeded):
    """The request would exceed one of the tenant's service quotas (e.g. function count)."""


class AccessDenied(AuthError):
    """Authenticated, but this principal may not call this operation."""


class SingleTenantMode(TenancyError):
    """The host cannot isolate tenants from each other: the platform keeps to one tenant.

    Lifted only by the operator's explicit `--insecure-multi-tenant`.
    """
