"""What one invocation returned: the durable invocation output, or a runtime fault."""

from __future__ import annotations

import json

from treadle.domain.models import ErrorObject
from treadle.domain.ports import InvocationOutcome


def parse_outcome(
    outcome: InvocationOutcome,
) -> tuple[str | None, str | None, ErrorObject | None, ErrorObject | None]:
    """(status, result, error, runtime_error) of one invocation."""
    if outcome.error is not None:
        err = outcome.error
        trace = err.get("stackTrace")
        return (
            None,
            None,
            None,
            ErrorObject(
                ErrorType=str(err.get("errorType", "Runtime.Unknown")),
                ErrorMessage=str(err.get("errorMessage", "")),
                StackTrace=[str(t) for t in trace] if isinstance(trace, list) else None,
            ),
        )
    try:
        body = json.loads(outcome.payload or b"null")
        status = body["Status"]
        if status not in ("SUCCEEDED", "FAILED", "PENDING"):
            raise ValueError(status)
    except (ValueError, KeyError, TypeError):
        return (
            None,
            None,
            None,
            ErrorObject(
                ErrorType="Runtime.InvalidOutput",
                ErrorMessage="A durable function must return the durable invocation output "
                "({Status, Result, Error}); is the handler decorated with @durable_execution?",
            ),
        )
    raw_error = body.get("Error")
    error = None
    if isinstance(raw_error, dict):
        error = ErrorObject.model_validate(
            {k: v for k, v in raw_error.items() if k in ErrorObject.model_fields}
        )
    return status, body.get("Result"), error, None
