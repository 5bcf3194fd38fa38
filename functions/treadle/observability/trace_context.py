"""The X-Ray header of the invocation running in this thread (stdlib only).

Set by `runtime.ObservedRuntime` around each invoke and read by the sandbox adapter,
which hands it to the worker as `_X_AMZN_TRACE_ID`: the FunctionRuntime port keeps
Lambda's Invoke signature.
"""

from __future__ import annotations

import contextvars

current_trace_header: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "treadle_trace_header", default=None
)
