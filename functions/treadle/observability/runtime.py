"""`ObservedRuntime`: any FunctionRuntime, with a span, metrics and a log line per invoke."""

from __future__ import annotations

import json
import re

from opentelemetry import trace
from opentelemetry.context import Context

from treadle.domain.ports import FunctionRuntime, FunctionVersion, InvocationOutcome
from treadle.observability import server_log
from treadle.observability.metrics import DurableMetrics
from treadle.observability.trace_context import (
    current_trace_header,
    execution_trace_id,
    span_id_of,
    xray_header_of,
)
from treadle.observability.tracing import recording, tracer, xray_header

# The engine's envelope starts with the ARN (`invocation.py` builds it in that order), so
# a look at its head finds it without parsing a payload that may be megabytes long.
_ARN_AT_HEAD = re.compile(rb'^\{\s*"DurableExecutionArn"\s*:\s*"([^"\\]{1,1024})"')


def _arn_at_head(payload: bytes) -> str | None:
    """The execution ARN a durable envelope starts with; None for a plain payload."""
    match = _ARN_AT_HEAD.match(payload[:1200])
    return None if match is None else match.group(1).decode()


def _parent(payload: bytes, request_id: str) -> Context | None:
    """The execution's trace as a remote parent: all its invocations share one trace."""
    arn = _arn_at_head(payload)
    if arn is None:
        return None
    # Sampled only when spans are exported: a non-sampled parent keeps the SDK quiet.
    sampled = recording()
    parent = trace.SpanContext(
        trace_id=execution_trace_id(arn),
        span_id=span_id_of(request_id),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else 0),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def _execution_arn(payload: bytes) -> str | None:
    # Only on the error path: the envelope may be large.
    try:
        arn = json.loads(payload).get("DurableExecutionArn")
    except (ValueError, AttributeError):
        return None
    return arn if isinstance(arn, str) else None


class ObservedRuntime:
    def __init__(self, inner: FunctionRuntime, metrics: DurableMetrics | None = None) -> None:
        self._inner = inner
        self._metrics = metrics

    def prepare(self, fn: FunctionVersion) -> None:
        self._inner.prepare(fn)

    def invoke(self, fn: FunctionVersion, payload: bytes, request_id: str) -> InvocationOutcome:
        if recording():
            outcome, error_type = self._traced(fn, payload, request_id)
        else:
            # The header a non-recording span would give, without the span.
            token = current_trace_header.set(_untraced_header(payload, request_id))
            try:
                outcome = self._inner.invoke(fn, payload, request_id)
            finally:
                current_trace_header.reset(token)
            error_type = _error_type(outcome)
        if self._metrics is not None:
            duration = float(outcome.ended_ms - outcome.started_ms)
            self._metrics.invoked(fn.tenant, fn.function_name, duration, error_type is not None)
        if error_type is not None:
            server_log.invocation_failed(
                tenant=fn.tenant,
                function=fn.function_name,
                request_id=request_id,
                execution_arn=_execution_arn(payload),
                error_type=error_type,
            )
        return outcome

    def _traced(
        self, fn: FunctionVersion, payload: bytes, request_id: str
    ) -> tuple[InvocationOutcome, str | None]:
        with tracer().start_as_current_span(
            f"Invoke {fn.function_name}",
            context=_parent(payload, request_id),
            kind=trace.SpanKind.CLIENT,
            attributes={
                "faas.invoked_name": fn.function_name,
                "faas.invocation_id": request_id,
                "cloud.account.id": fn.tenant,
                "treadle.function_version": fn.version,
            },
        ) as span:
            token = current_trace_header.set(xray_header(span))
            try:
                outcome = self._inner.invoke(fn, payload, request_id)
            finally:
                current_trace_header.reset(token)
            error_type = _error_type(outcome)
            if error_type is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
                span.set_attribute("faas.error_type", error_type)
        return outcome, error_type


def _error_type(outcome: InvocationOutcome) -> str | None:
    if outcome.error is None:
        return None
    return str(outcome.error.get("errorType") or "Unhandled")


def _untraced_header(payload: bytes, request_id: str) -> str:
    arn = _arn_at_head(payload)
    if arn is None:
        return xray_header(trace.INVALID_SPAN)  # a fresh root, as for any plain invoke
    return xray_header_of(execution_trace_id(arn), span_id_of(request_id), sampled=False)
