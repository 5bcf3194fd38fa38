"""The Lambda handler contract inside a worker: context object, error payloads, handler
loading and result marshalling, as awslambdaric does them (stdlib only)."""

from __future__ import annotations

import decimal
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from treadle.adapters.sandbox.lambda_logging import LogSink

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class Fault(Exception):
    """A runtime fault with Lambda's error type (awslambdaric's FaultException)."""

    def __init__(self, error_type: str, msg: str, trace: list[str] | None = None) -> None:
        super().__init__(msg)
        self.error_type = error_type
        self.msg = msg
        self.trace = trace


def make_error(
    message: str, error_type: str, stack_trace: list[str] | None, request_id: str = ""
) -> dict[str, Any]:
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id,
        "stackTrace": stack_trace or [],
    }


def _user_frames(tb: TracebackType | None) -> list[str]:
    # Like awslambdaric dropping bootstrap.py: the trace starts in the tenant's code.
    frames = traceback.extract_tb(tb)
    start = 0
    while start < len(frames) and os.path.dirname(frames[start].filename) == _PACKAGE_DIR:
        start += 1
    return traceback.format_list(frames[start:] if start < len(frames) else frames)


def fault_result(exc: BaseException, request_id: str = "") -> dict[str, Any]:
    if isinstance(exc, Fault):
        return make_error(exc.msg, exc.error_type, exc.trace, request_id)
    return make_error(str(exc), type(exc).__name__, _user_frames(exc.__traceback__), request_id)


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id: str | None = None
        self.cognito_identity_pool_id: str | None = None


class LambdaContext:
    """awslambdaric's context: identity fields come from the environment, like there."""

    def __init__(
        self, request_id: str, deadline_ms: int, invoked_function_arn: str, sink: LogSink
    ) -> None:
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        # A str, as in awslambdaric (it is read from the environment).
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id: str | None = None
        self.client_context: Any = None
        self.identity = CognitoIdentity()
        self._deadline_ms = deadline_ms
        self._sink = sink

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def log(self, msg: object) -> None:
        self._sink.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )


def load_handler(handler: str) -> Callable[..., Any]:
    """awslambdaric's _get_handler, with its error types and messages."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as exc:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}") from None
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise Fault(
                "Runtime.BuiltInModuleConflict",
                f"Cannot use built-in module {modname} as a handler module",
            )
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as exc:
        raise Fault(
            "Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}"
        ) from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise Fault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {exc}", trace
        ) from None
    try:
        found: Callable[..., Any] = getattr(module, fname)
    except AttributeError:
        raise Fault(
            "Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'"
        ) from None
    return found


def _json_default(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return float("nan")
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def marshal(value: object) -> bytes:
    if isinstance(value, bytes):
        return value  # awslambdaric passes bytes through untouched
    try:
        return json.dumps(value, default=_json_default).encode()
    except Exception as exc:
        raise Fault("Runtime.MarshalError", f"Unable to marshal response: {exc}") from None


def unmarshal(body: bytes) -> Any:
    try:
        return json.loads(body) if body else {}
    except Exception as exc:
        raise Fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}") from None
