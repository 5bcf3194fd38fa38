"""The server's own lines: one per execution status change and per invocation error.

`treadle dev --log-format json` makes every `treadle.*` record one JSON object a line
(time, level, logger, message, and the record's fields: tenant, function, execution
ARN, status...), for a log shipper; text is for a terminal.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import IO, Any, Final

from treadle.domain.notifications import StatusEvent
from treadle.observability.metrics import function_name

EXECUTIONS: Final = logging.getLogger("treadle.executions")
INVOCATIONS: Final = logging.getLogger("treadle.invocations")
# Record attributes that are the line's fields (set through `extra=`).
FIELDS: Final = (
    "tenant",
    "function",
    "execution_arn",
    "execution_name",
    "status",
    "previous_status",
    "request_id",
    "error_type",
    "duration_ms",
)


def status_changed(event: StatusEvent) -> None:
    fields: dict[str, Any] = {
        "tenant": event.tenant,
        "function": function_name(event.function_arn),
        "execution_arn": event.arn,
        "execution_name": event.name,
        "status": event.status,
        "previous_status": event.previous_status,
    }
    if event.end_ms is not None:
        fields["duration_ms"] = event.end_ms - event.start_ms
    was = f" (was {event.previous_status})" if event.previous_status else ""
    EXECUTIONS.info(
        "execution %s of %s %s%s", event.name, fields["function"], event.status, was, extra=fields
    )


def invocation_failed(
    *, tenant: str, function: str, request_id: str, execution_arn: str | None, error_type: str
) -> None:
    INVOCATIONS.warning(
        "invocation %s of %s failed: %s",
        request_id,
        function,
        error_type,
        extra={
            "tenant": tenant,
            "function": function,
            "request_id": request_id,
            "execution_arn": execution_arn,
            "error_type": error_type,
        },
    )


class JsonFormatter(logging.Formatter):
    """One JSON object a line: the record's fields beside time, level and message."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"))


def configure(level: str, fmt: str, stream: IO[str] | None = None) -> logging.Handler:
    """Lines to stderr, as text or JSON: `treadle.*` records at `level` and above, other
    libraries' at WARNING and above."""
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("treadle").setLevel(level)
    return handler
