"""The X-Ray header of the invocation running in this thread, and an execution's trace
(stdlib only: the API's serializer uses it too).

Set by `runtime.ObservedRuntime` around each invoke and read by the sandbox adapter,
which hands it to the worker as `_X_AMZN_TRACE_ID`: the FunctionRuntime port keeps
Lambda's Invoke signature.
"""

from __future__ import annotations

import contextvars
import hashlib

current_trace_header: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "treadle_trace_header", default=None
)


def execution_trace_id(execution_arn: str) -> int:
    """The 128-bit trace id of a durable execution, derived from its ARN.

    Derived rather than stored so that every invocation of one execution (replays after
    a restart included) and `GetDurableExecution` name the same trace with no new
    column in either store; the ARN is unique per execution, redrives included.
    """
    digest = hashlib.sha256(execution_arn.encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1  # 0 is OpenTelemetry's "invalid"


def span_id_of(request_id: str) -> int:
    """A 64-bit span id for one invocation (the parent named in its header)."""
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") or 1


def xray_header_of(trace_id: int, parent: int, sampled: bool) -> str:
    trace_hex = f"{trace_id:032x}"
    return f"Root=1-{trace_hex[:8]}-{trace_hex[8:]};Parent={parent:016x};Sampled={int(sampled)}"


def execution_trace_header(execution_arn: str) -> str:
    """`TraceHeader.XAmznTraceId` of GetDurableExecution: the execution's trace root,
    the one its invocations' `_X_AMZN_TRACE_ID` carries."""
    trace_hex = f"{execution_trace_id(execution_arn):032x}"
    return f"Root=1-{trace_hex[:8]}-{trace_hex[8:]}"
