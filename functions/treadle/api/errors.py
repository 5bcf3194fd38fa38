"""Error mapping: the only place that knows HTTP status codes and AWS error names."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from treadle.api.http import Response
from treadle.domain import errors as e
from treadle.tenancy.errors import BasicAuthRequired, RateExceeded, TenancyError

log = logging.getLogger(__name__)

# Most specific first.
_LAMBDA_ERRORS: list[tuple[type[e.TreadleError], int, str]] = [
    (e.ExecutionAlreadyStarted, 409, "DurableExecutionAlreadyStartedException"),
    (e.AlreadyExists, 409, "ResourceConflictException"),
    (e.Conflict, 409, "ResourceConflictException"),
    (e.CallbackTimedOut, 400, "CallbackTimeoutException"),
    (e.InvalidCode, 400, "InvalidParameterValueException"),
    (e.InvalidParameter, 400, "InvalidParameterValueException"),
    (e.NotFound, 404, "ResourceNotFoundException"),
    (e.Throttled, 429, "TooManyRequestsException"),
    (e.ConcurrentModification, 500, "ServiceException"),
    (e.Unavailable, 500, "ServiceException"),
]


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
    if isinstance(exc, TenancyError):
        # Tenancy errors carry their own code and status (see tenancy/errors.py).
        return exc.http_status, exc.aws_code, exc.message
    if isinstance(exc, e.TreadleError):
        for cls, status, code in _LAMBDA_ERRORS:
            if isinstance(exc, cls):
                return status, code, exc.message
    log.exception("unhandled error", exc_info=exc)
    return 500, "ServiceException", "An internal error occurred; it has been logged."


def _extra_headers(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, BasicAuthRequired):
        return {"www-authenticate": exc.www_authenticate}
    if isinstance(exc, RateExceeded):
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


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "Invalid request: " + "; ".join(parts)
