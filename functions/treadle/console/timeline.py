"""An execution's timeline from its history: rows of bars, invocations as bands.

Pure: history events (the wire JSON of GetDurableExecutionHistory, timestamps in epoch
seconds) in, geometry out. The page draws it as inline SVG; nothing here reads a clock
(an open bar ends at the `now` the caller passes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Event type prefix -> the kind of operation a row shows.
_KINDS = ("Step", "Wait", "Callback", "Context", "ChainedInvoke")
_CLOSING = ("Succeeded", "Failed", "TimedOut", "Stopped", "Cancelled")


@dataclass
class Bar:
    start: float
    end: float
    status: str  # running | succeeded | failed | retry | waiting | stopped ...
    label: str = ""
    open: bool = False  # still going at `now`


@dataclass
class Row:
    id: str
    name: str
    kind: str
    parent: str | None
    bars: list[Bar] = field(default_factory=list)
    depth: int = 0
    status: str = "running"
    first_event: int = 0


@dataclass
class Band:
    start: float
    end: float
    request_id: str
    failed: bool


@dataclass
class Timeline:
    start: float
    end: float
    rows: list[Row]
    bands: list[Band]

    @property
    def span(self) -> float:
        return max(self.end - self.start, 1e-3)


def _details(event: Mapping[str, Any]) -> Mapping[str, Any]:
    found = event.get(f"{event.get('EventType', '')}Details")
    return found if isinstance(found, Mapping) else {}


def _kind_and_phase(event_type: str) -> tuple[str, str] | None:
    for kind in _KINDS:
        if event_type.startswith(kind):
            return kind, event_type[len(kind) :]
    return None


def _close(row: Row, at: float, status: str, label: str = "") -> None:
    if row.bars and row.bars[-1].open:
        bar = row.bars[-1]
        bar.end, bar.status, bar.open = max(at, bar.start), status, False
        bar.label = label or bar.label
    else:  # a completion with no open attempt (e.g. a retry's next attempt unseen)
        row.bars.append(Bar(at, at, status, label))


def _apply(row: Row, phase: str, at: float, details: Mapping[str, Any]) -> None:
    if phase == "Started":
        if row.kind == "Wait":
            end = details.get("ScheduledEndTimestamp")
            row.bars.append(Bar(at, at, "waiting", "wait", open=True))
            if isinstance(end, (int, float)):
                row.bars[-1].label = f"wait until {end:.3f}"
        else:
            attempt = len([b for b in row.bars if b.status != "backoff"]) + 1
            label = f"attempt {attempt}" if row.kind == "Step" else row.kind.lower()
            row.bars.append(Bar(at, at, "running", label, open=True))
        row.status = "running"
        return
    retry = details.get("RetryDetails")
    if row.kind == "Step" and phase == "Failed" and isinstance(retry, Mapping):
        delay = retry.get("NextAttemptDelaySeconds")
        if isinstance(delay, (int, float)) and delay > 0:
            _close(row, at, "retry")
            # The pause before the next attempt, so the gap reads as backoff.
            row.bars.append(Bar(at, at + float(delay), "backoff", f"backoff {delay}s"))
            row.status = "retrying"
            return
        _close(row, at, "retry")
        row.status = "retrying"
        return
    status = phase.lower() if phase else "succeeded"
    _close(row, at, status)
    row.status = status


def build(events: Iterable[Mapping[str, Any]], now: float) -> Timeline:
    rows: dict[str, Row] = {}
    bands: list[Band] = []
    start: float | None = None
    end: float | None = None
    closed = False
    for event in events:
        at = event.get("EventTimestamp")
        if not isinstance(at, (int, float)):
            continue
        at = float(at)
        start = at if start is None else min(start, at)
        end = at if end is None else max(end, at)
        event_type = str(event.get("EventType", ""))
        details = _details(event)
        if event_type == "InvocationCompleted":
            s, e = details.get("StartTimestamp"), details.get("EndTimestamp")
            if isinstance(s, (int, float)) and isinstance(e, (int, float)):
                bands.append(
                    Band(float(s), float(e), str(details.get("RequestId", "")), "Error" in details)
                )
                start, end = min(start, float(s)), max(end, float(e))
            continue
        if event_type.startswith("Execution"):
            closed = closed or event_type.endswith(_CLOSING)
            continue
        kind_phase = _kind_and_phase(event_type)
        op_id = event.get("Id")
        if kind_phase is None or not isinstance(op_id, str):
            continue
        kind, phase = kind_phase
        row = rows.get(op_id)
        if row is None:
            parent = event.get("ParentId")
            row = Row(
                op_id,
                str(event.get("Name") or _unnamed(kind, details, op_id)),
                kind,
                parent if isinstance(parent, str) else None,
                first_event=int(event.get("EventId", 0)),
            )
            rows[op_id] = row
        _apply(row, phase, at, details)
    if start is None or end is None:
        return Timeline(now, now, [], [])
    if not closed:
        end = max(end, now)
    for row in rows.values():
        for bar in row.bars:
            if bar.open:
                bar.end = max(bar.start, end)
            end = max(end, bar.end)
    return Timeline(start, end, _nested(rows), bands)


def _unnamed(kind: str, details: Mapping[str, Any], op_id: str) -> str:
    """What an operation without a name is called: a wait by its duration."""
    duration = details.get("Duration")
    if kind == "Wait" and isinstance(duration, (int, float)):
        return f"{duration:g}s"
    return op_id[:8]


def _nested(rows: dict[str, Row]) -> list[Row]:
    """Rows in event order, each child right under its parent (depth first)."""
    children: dict[str | None, list[Row]] = {}
    for row in sorted(rows.values(), key=lambda r: r.first_event):
        parent = row.parent if row.parent in rows else None
        children.setdefault(parent, []).append(row)
    out: list[Row] = []

    def visit(parent: str | None, depth: int) -> None:
        for row in children.get(parent, []):
            row.depth = depth
            out.append(row)
            visit(row.id, depth + 1)

    visit(None, 0)
    return out


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    css: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "start"  # SVG text-anchor: the last tick ends at the plot's edge


@dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    bands: list[Rect]
    bars: list[Rect]
    labels: list[Label]
    ticks: list[Label]


ROW_H = 22
LABEL_W = 220
TOP = 20


def draw(timeline: Timeline, width: int = 960) -> Drawing:
    """Pixel geometry: a label column, then time to the right; bands behind the rows."""
    plot = width - LABEL_W - 10
    scale = plot / timeline.span

    def x(t: float) -> float:
        return round(LABEL_W + (t - timeline.start) * scale, 1)

    height = TOP + ROW_H * max(len(timeline.rows), 1) + 6
    bands = [
        Rect(
            x(b.start),
            TOP,
            max(x(b.end) - x(b.start), 1.0),
            height - TOP,
            "band-failed" if b.failed else "band",
            f"invocation {b.request_id} ({b.end - b.start:.3f}s)",
        )
        for b in timeline.bands
    ]
    bars: list[Rect] = []
    labels: list[Label] = []
    for i, row in enumerate(timeline.rows):
        y = TOP + i * ROW_H
        labels.append(Label(8 + 14 * row.depth, y + 15, f"{row.kind.lower()} {row.name}"))
        for bar in row.bars:
            w = max(x(bar.end) - x(bar.start), 2.0)
            title = f"{row.name}: {bar.label or bar.status} ({bar.end - bar.start:.3f}s)"
            bars.append(Rect(x(bar.start), y + 4, w, ROW_H - 8, f"bar-{bar.status}", title))
    ticks = [
        Label(
            x(timeline.start + timeline.span * k / 4),
            12,
            f"+{timeline.span * k / 4:.2f}s",
            "end" if k == 4 else "start",
        )
        for k in range(5)
    ]
    return Drawing(width, height, bands, bars, labels, ticks)
