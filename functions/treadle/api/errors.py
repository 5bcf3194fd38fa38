"""Error mapping: the only place that knows HTTP status codes and AWS error names.

Every error a request can end with, domain or tenancy, is classified by one table
(`_ERRORS`) into (status, code, message); each surface only renders that triple in its
own shape: AWS's JSON for the Lambda API, `{"error": ...}` for /v1, plain text for Git,
awsJson 1.1 for CloudWatch Logs. Codes and statuses are the ones Lambda (and the AWS
front door) really return, because clients branch on them: botocore retries a 429
`TooManyRequestsException` and never retries a 403 signature error.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from treadle.api.http import Response
from treadle.disk_full import is_disk_full, storage_full
from treadle.domain import errors as e
from treadle.tenancy import errors as t

log = logging.getLogger(__name__)


class UnknownOperation(e.InvalidParameter):
    """An awsJson request names an operation (X-Amz-Target) this service does not have."""


class Unserializable(e.InvalidParameter):
    """An awsJson request whose body is not the JSON object the protocol requires."""


# Most specific first: the first class the error is an instance of decides.
_ERRORS: list[tuple[type[e.TreadleError], int, str]] = [
    # Authentication and authorization (tenancy): refused before any tenant resource.
    (t.MissingAuthenticationToken, 403, "MissingAuthenticationTokenException"),
    (t.IncompleteSignature, 400, "IncompleteSignatureException"),
    (t.UnrecognizedClient, 403, "UnrecognizedClientException"),
    (t.InvalidSignature, 403, "InvalidSignatureException"),
    # Git asks for (or sends) credentials on a 401 with WWW-Authenticate.
    (t.BasicAuthRequired, 401, "UnrecognizedClientException"),
    (t.AccessDenied, 403, "AccessDeniedException"),
    # Quotas (tenancy).
    (t.RateExceeded, 429, "TooManyRequestsException"),
    (t.CodeStorageExceeded, 400, "CodeStorageExceededException"),
    (t.ServiceQuotaExceeded, 402, "ServiceQuotaExceededException"),
    # The platform's own configuration refuses the request whatever the caller does.
    (t.SingleTenantMode, 409, "ResourceConflictException"),
    (t.TenancyError, 500, "ServiceException"),
    # The domain.
    (e.ExecutionAlreadyStarted, 409, "DurableExecutionAlreadyStartedException"),
    (e.ExecutionClosed, 409, "ResourceConflictException"),
    (e.EventBufferFull, 429, "EventBufferFullException"),
    (e.AlreadyExists, 409, "ResourceConflictException"),
    (e.PreconditionFailed, 412, "PreconditionFailedException"),
    (e.Conflict, 409, "ResourceConflictException"),
    (e.CallbackTimedOut, 400, "CallbackTimeoutException"),
    (UnknownOperation, 400, "UnknownOperationException"),
    (e.InvalidCode, 400, "InvalidParameterValueException"),
    (e.ValidationFailed, 400, "ValidationException"),
    (e.InvalidParameter, 400, "InvalidParameterValueException"),
    (e.NotFound, 404, "ResourceNotFoundException"),
    (e.Throttled, 429, "TooManyRequestsException"),
    (e.ConcurrentModification, 500, "ServiceException"),
    # 503, not Lambda's usual 500: the caller's SDK retries it, and it says "come back
    # later" rather than "we broke" (the message names the directory to free).
    (e.StorageFull, 503, "ServiceException"),
    (e.Unavailable, 500, "ServiceException"),
]

# CloudWatch Logs names some of the same errors differently, and answers a missing log
# group with 400; any other error keeps its row above.
_LOGS_ERRORS: list[tuple[type[e.TreadleError], int, str]] = [
    (Unserializable, 400, "SerializationException"),
    (UnknownOperation, 400, "UnknownOperationException"),
    (e.InvalidParameter, 400, "InvalidParameterException"),
    (e.NotFound, 400, "ResourceNotFoundException"),
]
_LOGS_CONTENT_TYPE = "application/x-amz-json-1.1"
_WWW_AUTHENTICATE = 'Basic realm="treadle", charset="UTF-8"'


def aws_error(status: int, code: str, message: str) -> Response:
    return Response.json(
        {"Type": "User" if status < 500 else "Service", "message": message, "Message": message},
        status=status,
        headers={"x-amzn-errortype": code},
    )


def classify(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, AWS error code, message) of any error; unknown ones are logged."""
    if isinstance(exc, ValidationError):
        return 400, "InvalidParameterValueException", validation_message(exc)
    if not isinstance(exc, e.TreadleError) and is_disk_full(exc):
        # A writer no adapter translated (a log line, a spool file): still no trace.
        log.warning("disk full: %s", exc)
        exc = storage_full("the data directory")
    if isinstance(exc, e.TreadleError):
        for cls, status, code in _ERRORS:
            if isinstance(exc, cls):
                return status, code, exc.message
    log.exception("unhandled error", exc_info=exc)
    return 500, "ServiceException", "An internal error occurred; it has been logged."


def _extra_headers(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, t.BasicAuthRequired):
        return {"www-authenticate": _WWW_AUTHENTICATE}
    if isinstance(exc, t.RateExceeded):
        return {"retry-after": str(max(1, round(exc.retry_after_s)))}
    return {}


def lambda_error(exc: BaseException) -> Response:
    """AWS's error shape: what botocore parses into `ClientError`."""
    status, code, message = classify(exc)
    response = aws_error(status, code, message)
    response.headers.update(_extra_headers(exc))
    return response


def v1_error(exc: BaseException) -> Response:
    """`/v1` errors: the same codes and statuses, in a plain JSON object."""
    status, code, message = classify(exc)
    return v1_json_error(status, code, message, _extra_headers(exc))


def v1_json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"error": {"code": code, "message": message, "retryable": status in (429, 500, 503)}}
    return Response.json(body, status=status, headers=headers)


def text_error(exc: BaseException) -> Response:
    """Git prints the body of a refused smart-HTTP request as is: plain text."""
    status, _code, message = classify(exc)
    headers = {"content-type": "text/plain", **_extra_headers(exc)}
    return Response(status=status, body=(message + "\n").encode(), headers=headers)


def logs_error(exc: BaseException) -> Response:
    """CloudWatch Logs' awsJson 1.1 shape: `__type` and `message`."""
    status, code, message = classify(exc)
    for cls, logs_status, logs_code in _LOGS_ERRORS:
        if isinstance(exc, cls):
            status, code = logs_status, logs_code
            break
    headers = {"x-amzn-errortype": code, "content-type": _LOGS_CONTENT_TYPE}
    headers.update(_extra_headers(exc))
    return Response.json({"__type": code, "message": message}, status=status, headers=headers)


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "Invalid request: " + "; ".join(parts)
