"""Error mapping: the only place that knows HTTP status codes and AWS error names."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from treadle.api.http import Response
from treadle.domain import errors as e

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


def lambda_error(exc: BaseException) -> Response:
    if isinstance(exc, ValidationError):
        return aws_error(400, "InvalidParameterValueException", validation_message(exc))
    if isinstance(exc, e.TreadleError):
        for cls, status, code in _LAMBDA_ERRORS:
            if isinstance(exc, cls):
                return aws_error(status, code, exc.message)
    log.exception("unhandled error", exc_info=exc)
    return aws_error(500, "ServiceException", "An internal error occurred; it has been logged.")


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "Invalid request: " + "; ".join(parts)
