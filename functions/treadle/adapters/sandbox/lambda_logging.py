"""Lambda's log contract inside a worker: awslambdaric's JSON records (stdlib only).

With AWS_LAMBDA_LOG_FORMAT=JSON, awslambdaric installs a root handler writing one JSON
object per record; `extra={...}` attributes become top-level keys, which is how the
durable SDK's `executionArn` / `operationId` reach log filters. Records and print()
output share one pipe, so their order is the order they were written.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import traceback
from typing import Any

_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
# awslambdaric's list, plus what Formatter.format / 3.12 may add to a record.
_RESERVED_FIELDS = frozenset(
    {
        "name",
        "msg",
        "args",
        "levelname",
        "levelno",
        "pathname",
        "filename",
        "module",
        "exc_info",
        "exc_text",
        "stack_info",
        "lineno",
        "funcName",
        "created",
        "msecs",
        "relativeCreated",
        "thread",
        "threadName",
        "processName",
        "process",
        "aws_request_id",
        "tenant_id",
        "_frame_type",
        "message",
        "asctime",
        "taskName",
    }
)

request_id = ""  # of the invocation in progress (awslambdaric's _GLOBAL_AWS_REQUEST_ID)


class LogSink:
    """Writes whole records to the log pipe with one write(2) each where possible."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", "backslashreplace"))
        while data:
            data = data[os.write(self._fd, data) :]


class JsonFormatter(logging.Formatter):
    """awslambdaric's JSON format: extras become top-level keys (e.g. executionArn)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        whole = time.strftime(_DATETIME_FORMAT, time.gmtime(record.created))
        return f"{whole}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        record.levelno = min(50, max(0, record.levelno)) // 10 * 10
        record.levelname = logging.getLevelName(record.levelno)
        exc = record.exc_info
        result: dict[str, Any] = {
            "timestamp": self.formatTime(record),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc[2]) if exc else None,
            "errorType": exc[0].__name__ if exc and exc[0] else None,
            "errorMessage": str(exc[1]) if exc else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": f"{record.pathname}:{record.funcName}:{record.lineno}" if exc else None,
        }
        tenant_id = getattr(record, "tenant_id", None)
        if tenant_id is not None:
            result["tenantId"] = tenant_id
        result.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _RESERVED_FIELDS and key not in result
        )
        result = {k: v for k, v in result.items() if v is not None}
        return json.dumps(result, ensure_ascii=False, default=str) + "\n"


class _RequestFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = request_id
        record.tenant_id = None
        return True


class _SinkHandler(logging.Handler):
    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.log_sink = sink  # awslambdaric's attribute name, which some libraries probe

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log_sink.write(self.format(record))
        except Exception:
            self.handleError(record)


def log_error(sink: LogSink, error: dict[str, Any]) -> None:
    line = {"timestamp": time.strftime(_DATETIME_FORMAT, time.gmtime()), "level": "ERROR"}
    sink.write(json.dumps({**line, **error}) + "\n")


def text_stream(fd: int) -> io.TextIOWrapper:
    # Unbuffered like awslambdaric's: a line printed before a crash is not lost.
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(
        raw, encoding="utf-8", errors="backslashreplace", line_buffering=True, write_through=True
    )


def _log_level_from_env() -> str:
    raw = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    level = {None: "INFO", "TRACE": "DEBUG"}.get(raw, raw or "INFO").upper()
    return level if level in logging.getLevelNamesMapping() else "INFO"


def set_level_from_env() -> None:
    """The root level from AWS_LAMBDA_LOG_LEVEL, once the function's environment is set."""
    logging.getLogger().setLevel(_log_level_from_env())


def setup_logging(sink: LogSink) -> None:
    logging.Formatter.converter = time.gmtime  # as awslambdaric does
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = _SinkHandler(sink)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_RequestFilter())
    root.addHandler(handler)
    root.setLevel(_log_level_from_env())
