"""Code that runs inside a sandbox worker process (after the fork).

It honours the Lambda Python runtime contract: handler `module.function`, a context
object, Lambda's error payloads, JSON log records (`AWS_LAMBDA_LOG_FORMAT=JSON`), and a
scrubbed environment. It imports only the stdlib besides the tenant's code.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import resource
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# Virtual size each thread stack reserves is counted by RLIMIT_AS though mostly unused.
_THREAD_SLACK_MB = 512
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class LambdaContext:
    def __init__(self, spec: dict[str, Any], request_id: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self.function_name = spec["function_name"]
        self.function_version = spec["function_version"]
        self.invoked_function_arn = spec["invoked_function_arn"]
        self.memory_limit_in_mb = str(spec["memory_mb"])
        self.log_group_name = spec["log_group"]
        self.log_stream_name = f"[{spec['function_version']}]{os.getpid()}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


class _JsonFormatter(logging.Formatter):
    """Lambda's JSON log format: extras become top-level keys (e.g. executionArn)."""

    request_id = ""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": self.request_id,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["stackTrace"] = traceback.format_exception(*record.exc_info)
        return json.dumps(out, default=str)


class _Capture(io.TextIOBase):
    def __init__(self, lines: list[str]) -> None:
        self._lines = lines
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self._lines.append(line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._lines.append(self._partial)
            self._partial = ""


class _ListHandler(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _error(exc: BaseException, request_id: str) -> dict[str, Any]:
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_tb(exc.__traceback__),
        "requestId": request_id,
    }


def _load_handler(spec: dict[str, Any]) -> Any:
    code_dir = Path(spec["code_dir"])
    module_path, _, func_name = spec["handler"].rpartition(".")
    module_name = module_path.replace("/", ".")
    # A package the tenant bundles wins over the runtime's pre-imported copy.
    bundled = {p.name.removesuffix(".py") for p in code_dir.iterdir()}
    for name in list(sys.modules):
        if name.split(".")[0] in bundled:
            del sys.modules[name]
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        return {
            "errorType": "Runtime.ImportModuleError",
            "errorMessage": f"Unable to import module '{module_name}': {exc}",
            "stackTrace": [],
        }
    handler = getattr(module, func_name, None)
    if handler is None:
        return {
            "errorType": "Runtime.HandlerNotFound",
            "errorMessage": f"Handler '{func_name}' missing on module '{module_name}'",
            "stackTrace": [],
        }
    return handler


def _vsize() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def main(conn: Connection, spec: dict[str, Any]) -> None:
    os.environ.clear()
    os.environ.update(spec["env"])
    code_dir = spec["code_dir"]
    os.chdir(code_dir)
    sys.path.insert(0, code_dir)
    lines: list[str] = []
    formatter = _JsonFormatter()
    handler_obj = _ListHandler(lines)
    handler_obj.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler_obj]
    root.setLevel(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO"))
    sys.stdout = _Capture(lines)
    sys.stderr = _Capture(lines)
    target = _load_handler(spec)
    # Address space now, plus the function's memory: allocations beyond fail.
    limit = _vsize() + (int(spec["memory_mb"]) + _THREAD_SLACK_MB) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        request_id, payload, timeout_s = message
        lines.clear()
        formatter.request_id = request_id
        result: dict[str, Any]
        if isinstance(target, dict):
            result = {"error": {**target, "requestId": request_id}}
        else:
            try:
                event = json.loads(payload) if payload else None
                context = LambdaContext(spec, request_id, time.time() + timeout_s)
                value = target(event, context)
                try:
                    result = {"payload": json.dumps(value).encode()}
                except (TypeError, ValueError) as exc:
                    result = {
                        "error": {
                            "errorType": "Runtime.MarshalError",
                            "errorMessage": f"Unable to marshal response: {exc}",
                            "requestId": request_id,
                        }
                    }
            except MemoryError:
                result = {
                    "error": {
                        "errorType": "Runtime.OutOfMemory",
                        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with "
                        "error: signal: killed (out of memory)",
                        "requestId": request_id,
                    }
                }
            except Exception as exc:
                result = {"error": _error(exc, request_id)}
        sys.stdout.flush()
        sys.stderr.flush()
        result["logs"] = list(lines)
        conn.send(result)
        if "error" in result and result["error"].get("errorType") == "Runtime.OutOfMemory":
            os._exit(137)
