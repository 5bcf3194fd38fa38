"""OpenTelemetry: a span per invocation and per checkpoint; the trace id handed on.

Off by default (`TREADLE_OTEL_EXPORTER=none`): no provider is installed, no span is
made (`recording`) and nothing is written.
Tenant code gets the trace the way Lambda hands it: `_X_AMZN_TRACE_ID`
(`Root=1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx;Parent=...;Sampled=...`), set in the worker
for each invocation (`trace_context`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)

TRACER_NAME: Final = "treadle"
ENV_TRACE_ID: Final = "_X_AMZN_TRACE_ID"  # Lambda's; what the SDKs and X-Ray read


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def recording() -> bool:
    """Whether spans are exported: an SDK provider is installed (`configure`, or a test's).

    Without one every span is non-recording, and the API still costs ~15 µs per span
    (a tracer, a context attached and detached, attributes): twice per one-step
    execution, for nothing. The callers skip it then."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def configure(exporter: str, *, service: str = "treadle") -> TracerProvider | None:
    """Install the provider `exporter` asks for; None (no provider) for "none"."""
    processor: SpanProcessor
    if exporter == "none":
        return None
    if exporter == "console":
        processor = SimpleSpanProcessor(ConsoleSpanExporter())
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        raise ValueError(f"unknown OpenTelemetry exporter {exporter!r}")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def xray_header(span: trace.Span) -> str:
    """The span as an X-Ray trace header; a fresh, unsampled root when nothing records
    (Lambda sets the variable on every invocation, traced or not)."""
    ctx = span.get_span_context()
    if ctx.is_valid:
        trace_hex = f"{ctx.trace_id:032x}"
        parent = f"{ctx.span_id:016x}"
        sampled = 1 if ctx.trace_flags.sampled else 0
    else:
        trace_hex, parent, sampled = secrets.token_hex(16), secrets.token_hex(8), 0
    return f"Root=1-{trace_hex[:8]}-{trace_hex[8:]};Parent={parent};Sampled={sampled}"


@contextmanager
def checkpoint_span(arn: str, updates: int) -> Iterator[None]:
    """A span around one checkpoint (the SDK's CheckpointDurableExecution)."""
    if not recording():
        yield
        return
    with tracer().start_as_current_span(
        "CheckpointDurableExecution",
        kind=trace.SpanKind.SERVER,
        attributes={"treadle.execution_arn": arn, "treadle.updates": updates},
    ):
        yield
