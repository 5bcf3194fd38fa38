"""Metrics from a sequence of status events, the server's JSON lines, EMF, and spans."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from treadle.domain.notifications import StatusEvent
from treadle.domain.ports import FunctionVersion, InvocationOutcome
from treadle.observability import runtime as observed_runtime
from treadle.observability import server_log, tracing
from treadle.observability.emf import EmfMetrics
from treadle.observability.metrics import DurableMetrics, metric_names
from treadle.observability.runtime import ObservedRuntime
from treadle.observability.trace_context import current_trace_header, execution_trace_header

A, B = "111111111111", "222222222222"


def event(
    tenant: str, fn: str, name: str, status: str, previous: str | None, end: int | None = None
) -> StatusEvent:
    arn = f"arn:aws:lambda:us-east-1:{tenant}:function:{fn}:$LATEST/durable-execution/{name}/x"
    return StatusEvent(
        id=f"{name}-{status}",
        tenant=tenant,
        time_ms=1000,
        arn=arn,
        name=name,
        function_arn=f"arn:aws:lambda:us-east-1:{tenant}:function:{fn}:$LATEST",
        status=status,
        previous_status=previous,
        start_ms=1000,
        end_ms=end,
    )


LIFE = [
    event(A, "orders", "e1", "RUNNING", None),
    event(A, "orders", "e2", "RUNNING", None),
    event(A, "orders", "e3", "RUNNING", None),
    event(A, "orders", "e1", "SUCCEEDED", "RUNNING", end=1500),
    event(A, "orders", "e2", "PAUSED", "RUNNING"),
    event(A, "orders", "e2", "RUNNING", "PAUSED"),  # a resume is no second start
    event(A, "orders", "e2", "TIMED_OUT", "RUNNING", end=4000),
    event(B, "orders", "f1", "RUNNING", None),
    event(B, "orders", "f1", "STOPPED", "RUNNING", end=1100),
    event(B, "mail", "f2", "RUNNING", None),
    event(B, "mail", "f2", "FAILED", "RUNNING", end=1200),
]


def samples(m: DurableMetrics, tenant: str | None = None) -> dict[tuple[str, str, str], float]:
    return {
        (s.name, s.labels["tenant"], s.labels["function"]): s.value
        for family in m.families(tenant)
        for s in family.samples
    }


def test_a_sequence_of_status_events_gives_aws_counters_per_tenant_and_function() -> None:
    m = DurableMetrics()
    for e in LIFE:
        m.status_changed(e)
    got = samples(m)
    assert got[("DurableExecutionStarted_total", A, "orders")] == 3
    assert got[("DurableExecutionSucceeded_total", A, "orders")] == 1
    assert got[("DurableExecutionTimedOut_total", A, "orders")] == 1
    assert got[("ApproximateRunningDurableExecutions", A, "orders")] == 1  # e3
    assert got[("DurableExecutionStopped_total", B, "orders")] == 1
    assert got[("DurableExecutionFailed_total", B, "mail")] == 1
    assert got[("ApproximateRunningDurableExecutions", B, "mail")] == 0
    assert got[("DurableExecutionDuration_count", A, "orders")] == 2
    assert got[("DurableExecutionDuration_sum", A, "orders")] == 500 + 3000
    assert ("DurableExecutionFailed_total", A, "orders") not in got


def test_one_tenants_view_holds_none_of_anothers_series() -> None:
    m = DurableMetrics()
    for e in LIFE:
        m.status_changed(e)
    assert {tenant for _, tenant, _ in samples(m, A)} == {A}
    text = m.exposition(B).decode()
    assert A not in text and 'DurableExecutionStopped_total{function="orders",tenant="2' in text


def test_a_close_of_an_execution_started_before_this_process_never_goes_below_zero() -> None:
    m = DurableMetrics()
    m.status_changed(event(A, "orders", "old", "SUCCEEDED", "RUNNING", end=2000))
    assert samples(m)[("ApproximateRunningDurableExecutions", A, "orders")] == 0


def test_the_counters_each_status_increments() -> None:
    assert metric_names(event(A, "f", "n", "RUNNING", None)) == ["DurableExecutionStarted"]
    assert metric_names(event(A, "f", "n", "RUNNING", "PAUSED")) == []
    assert metric_names(event(A, "f", "n", "STOPPED", "RUNNING")) == ["DurableExecutionStopped"]


def test_status_changes_and_invocation_errors_are_json_lines() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(server_log.JsonFormatter())
    root = logging.getLogger("treadle")
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        server_log.status_changed(LIFE[3])
        server_log.invocation_failed(
            tenant=A,
            function="orders",
            request_id="r-1",
            execution_arn=LIFE[3].arn,
            error_type="Sandbox.Timedout",
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    change, error = (json.loads(line) for line in out.getvalue().splitlines())
    assert change["level"] == "INFO" and change["logger"] == "treadle.executions"
    assert change["time"].endswith("+00:00")
    assert {k: change[k] for k in ("tenant", "function", "status", "previous_status")} == {
        "tenant": A,
        "function": "orders",
        "status": "SUCCEEDED",
        "previous_status": "RUNNING",
    }
    assert change["execution_arn"] == LIFE[3].arn and change["duration_ms"] == 500
    assert error["level"] == "WARNING" and error["error_type"] == "Sandbox.Timedout"
    assert error["request_id"] == "r-1" and error["execution_arn"] == LIFE[3].arn


def test_emf_lines_carry_the_aws_name_and_the_tenant_and_function(
    capsys: pytest.CaptureFixture[str],
) -> None:
    EmfMetrics("TreadleTest").status_changed(LIFE[6])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]: line for line in lines}
    assert set(by_name) == {"DurableExecutionTimedOut", "DurableExecutionDuration"}
    timed_out = by_name["DurableExecutionTimedOut"]
    assert timed_out["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TreadleTest"
    assert timed_out["tenant"] == A and timed_out["function"] == "orders"
    assert timed_out["DurableExecutionTimedOut"] == [1.0]
    assert by_name["DurableExecutionDuration"]["DurableExecutionDuration"] == [3000.0]


# -- spans ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    # The global provider can be set once per process: every test here shares it.
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    trace.set_tracer_provider(provider)
    return found


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


FN = FunctionVersion(
    tenant=A,
    function_name="orders",
    version="3",
    function_arn=f"arn:aws:lambda:us-east-1:{A}:function:orders",
    handler="handler.handler",
    code_sha256="x",
    code_size=1,
    code_key="k",
    last_modified_ms=0,
    revision_id="r",
)


class CheckpointingRuntime:
    """Checkpoints twice while it runs, as the SDK does; remembers its trace header."""

    def __init__(self, error: dict[str, Any] | None = None) -> None:
        self.headers: list[str | None] = []
        self.error = error

    def prepare(self, fn: FunctionVersion) -> None:
        pass

    def invoke(self, fn: FunctionVersion, payload: bytes, request_id: str) -> InvocationOutcome:
        self.headers.append(current_trace_header.get())
        for updates in (1, 2):
            with tracing.checkpoint_span("arn:x", updates):
                pass
        return InvocationOutcome(request_id, b"{}", self.error, 1000, 1250)


def test_an_invocation_is_a_span_with_its_checkpoints_inside_and_its_trace_handed_on(
    spans: InMemorySpanExporter,
) -> None:
    inner = CheckpointingRuntime()
    metrics = DurableMetrics()
    ObservedRuntime(inner, metrics).invoke(FN, b'{"DurableExecutionArn": "arn:x"}', "req-1")
    done = spans.get_finished_spans()
    assert [s.name for s in done] == [
        "CheckpointDurableExecution",
        "CheckpointDurableExecution",
        "Invoke orders",
    ]
    invoke = done[-1]
    assert all(
        s.parent is not None and s.parent.span_id == invoke.context.span_id for s in done[:2]
    )
    assert [s.attributes["treadle.updates"] for s in done[:2] if s.attributes] == [1, 2]
    assert invoke.attributes is not None and invoke.attributes["faas.invocation_id"] == "req-1"
    trace_hex = f"{invoke.context.trace_id:032x}"
    assert inner.headers == [
        f"Root=1-{trace_hex[:8]}-{trace_hex[8:]};Parent={invoke.context.span_id:016x};Sampled=1"
    ]
    assert current_trace_header.get() is None  # only for the invocation's duration
    got = samples(metrics)
    assert got[("Invocations_total", A, "orders")] == 1
    assert got[("Duration_sum", A, "orders")] == 250


def test_a_function_error_marks_the_span_counts_an_error_and_logs_a_line(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = DurableMetrics()
    runtime = ObservedRuntime(CheckpointingRuntime({"errorType": "Sandbox.Timedout"}), metrics)
    with caplog.at_level(logging.WARNING, logger="treadle.invocations"):
        runtime.invoke(FN, b'{"DurableExecutionArn": "arn:x"}', "req-2")
    invoke = spans.get_finished_spans()[-1]
    assert invoke.status.status_code is trace.StatusCode.ERROR
    assert samples(metrics)[("Errors_total", A, "orders")] == 1
    (record,) = [r for r in caplog.records if r.name == "treadle.invocations"]
    assert getattr(record, "execution_arn", None) == "arn:x"
    assert getattr(record, "error_type", None) == "Sandbox.Timedout"


def test_with_no_exporter_tenant_code_still_gets_an_unsampled_header() -> None:
    header = tracing.xray_header(trace.INVALID_SPAN)
    assert header.endswith(";Sampled=0") and header.startswith("Root=1-")
    assert tracing.configure("none") is None


def test_with_no_exporter_an_invocation_makes_no_span_and_hands_on_the_same_headers(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = f"arn:aws:lambda:us-east-1:{A}:function:orders:3/durable-execution/e/1"
    payload = json.dumps({"DurableExecutionArn": arn}).encode()
    # No provider installed: what the API's tracer then is, and the header its span gives.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())
    assert not tracing.recording()
    with trace.NoOpTracer().start_as_current_span(
        "Invoke orders", context=observed_runtime._parent(payload, "req-3")
    ) as span:
        expected = tracing.xray_header(span)
    inner = CheckpointingRuntime()
    metrics = DurableMetrics()
    ObservedRuntime(inner, metrics).invoke(FN, payload, "req-3")
    ObservedRuntime(inner, metrics).invoke(FN, b"{}", "req-4")
    ObservedRuntime(inner, metrics).invoke(FN, b"{}", "req-5")
    assert spans.get_finished_spans() == ()  # neither the invocations nor their checkpoints
    durable, plain, other_plain = inner.headers
    assert durable == expected
    assert durable is not None and durable.startswith(execution_trace_header(arn) + ";")
    assert durable.endswith(";Sampled=0")
    # A plain invoke gets a fresh, unsampled root each time, as from Lambda.
    assert plain is not None and other_plain is not None
    assert plain.endswith(";Sampled=0") and plain.split(";")[0] != other_plain.split(";")[0]
    assert current_trace_header.get() is None
    assert samples(metrics)[("Invocations_total", A, "orders")] == 3
