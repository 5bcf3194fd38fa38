"""The console's timeline: history events in, rows of bars and invocation bands out."""

from __future__ import annotations

from typing import Any

from treadle.console.timeline import build, draw


def ev(n: int, etype: str, at: float, op: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"EventId": n, "EventType": etype, "EventTimestamp": at}
    if op is not None:
        out["Id"] = op
        out["Name"] = extra.pop("name", op)
    details = extra.pop("details", None)
    if details is not None:
        out[f"{etype}Details"] = details
    out.update(extra)
    return out


def invocation(n: int, start: float, end: float, rid: str, error: bool = False) -> dict[str, Any]:
    details: dict[str, Any] = {"StartTimestamp": start, "EndTimestamp": end, "RequestId": rid}
    if error:
        details["Error"] = {"Payload": {"ErrorType": "Runtime.ExitError"}}
    return ev(n, "InvocationCompleted", end, details=details)


HISTORY = [
    ev(1, "ExecutionStarted", 100.0),
    ev(2, "StepStarted", 100.1, "s1", name="charge"),
    ev(3, "StepFailed", 100.2, "s1", details={"RetryDetails": {"CurrentAttempt": 1,
                                                              "NextAttemptDelaySeconds": 2}}),
    invocation(4, 100.0, 100.3, "req-1"),
    ev(5, "StepStarted", 102.2, "s1"),
    ev(6, "StepSucceeded", 102.4, "s1"),
    ev(7, "ContextStarted", 102.5, "c1", name="child"),
    ev(8, "StepStarted", 102.6, "c1s", name="inner", ParentId="c1"),
    ev(9, "StepSucceeded", 102.7, "c1s"),
    ev(10, "ContextSucceeded", 102.8, "c1"),
    ev(11, "WaitStarted", 102.9, "w1", details={"ScheduledEndTimestamp": 112.9}),
    invocation(12, 102.0, 103.0, "req-2"),
    ev(13, "WaitSucceeded", 112.9, "w1"),
    ev(14, "CallbackStarted", 113.0, "cb", name="approval"),
]  # fmt: skip


def test_a_step_that_failed_once_shows_both_attempts_and_the_backoff_between() -> None:
    line = build(HISTORY, now=120.0)
    step = next(r for r in line.rows if r.name == "charge")
    assert [(b.status, b.start, b.end) for b in step.bars] == [
        ("retry", 100.1, 100.2),
        ("backoff", 100.2, 102.2),
        ("succeeded", 102.2, 102.4),
    ]
    assert step.bars[2].label == "attempt 2"
    assert step.status == "succeeded"


def test_a_child_contexts_operations_are_nested_right_under_it() -> None:
    rows = build(HISTORY, now=120.0).rows
    names = [(r.name, r.depth) for r in rows]
    assert names == [("charge", 0), ("child", 0), ("inner", 1), ("w1", 0), ("approval", 0)]


def test_invocations_are_bands_and_a_crashed_one_is_marked() -> None:
    events = [*HISTORY, invocation(15, 113.0, 113.5, "req-3", error=True)]
    bands = build(events, now=120.0).bands
    assert [(b.request_id, b.failed) for b in bands] == [
        ("req-1", False),
        ("req-2", False),
        ("req-3", True),
    ]


def test_an_open_execution_runs_its_open_bars_to_now_and_a_closed_one_stops_at_its_end() -> None:
    line = build(HISTORY, now=120.0)
    callback = next(r for r in line.rows if r.kind == "Callback")
    assert callback.bars[-1].open and callback.bars[-1].end == 120.0
    assert line.end == 120.0
    closed = [
        *HISTORY,
        ev(15, "CallbackSucceeded", 115.0, "cb"),
        ev(16, "ExecutionSucceeded", 115.1),
    ]
    line = build(closed, now=500.0)
    assert line.end == 115.1
    assert next(r for r in line.rows if r.kind == "Callback").status == "succeeded"


def test_a_step_failing_for_good_is_failed_and_no_history_is_an_empty_timeline() -> None:
    failed = [ev(1, "StepStarted", 1.0, "s"), ev(2, "StepFailed", 2.0, "s")]
    assert build(failed, now=3.0).rows[0].bars[0].status == "failed"
    empty = build([], now=3.0)
    assert empty.rows == [] and empty.bands == []


def test_the_drawing_maps_time_to_pixels_inside_the_plot() -> None:
    line = build(HISTORY, now=120.0)
    drawing = draw(line, width=1000)
    assert len(drawing.bars) == sum(len(r.bars) for r in line.rows)
    assert all(r.x >= 220 and r.x + r.w <= 1000 for r in drawing.bars)
    first, last = drawing.ticks[0], drawing.ticks[-1]
    assert first.x == 220 and last.x == 990 and last.text == "+20.00s"
    # Nested rows are indented under their parent.
    inner = next(label for label in drawing.labels if label.text == "step inner")
    child = next(label for label in drawing.labels if label.text == "context child")
    assert inner.x > child.x
