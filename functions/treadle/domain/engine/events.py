"""Events by type: sent to an execution, taken by its waits (`docs/events.md`).

A wait is the SDK's own callback operation, marked by the helper `wait_for_event`
(package `treadle_workflows`): SubType `Event`, Name `event:<type>`. So the history,
the replay and the timeout stay the SDK's; the platform only decides which result
completes which callback:

- `send`: an open wait of that type (the oldest) is completed at once; otherwise the
  event is appended to the execution's buffer (FIFO per type, capped, with a TTL).
- `take_buffered`: when a checkpoint records a new wait, the oldest live buffered
  event of its type completes it in that same commit.

Both are changes of one execution's working set, so a buffered event leaves the
buffer in exactly the commit that completes a callback with it: once, whatever
crashes around it.
"""

from __future__ import annotations

import re

from treadle.domain.engine import callbacks
from treadle.domain.engine.working_set import WorkingSet
from treadle.domain.errors import EventBufferFull, ExecutionClosed, InvalidParameter
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    BufferedEvent,
    Execution,
    Operation,
    OperationStatus,
    OperationType,
)

EVENT_SUBTYPE = "Event"
EVENT_NAME_PREFIX = "event:"
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MAX_BUFFERED_PER_TYPE = 100
MAX_BUFFERED_PER_EXECUTION = 1000
# The buffer lives in the execution record, which every change rewrites: its bytes are
# bounded so that a full buffer cannot make every checkpoint of the execution slow.
MAX_BUFFERED_BYTES = 1024 * 1024
MAX_EVENT_PAYLOAD_BYTES = 256 * 1024
DEFAULT_TTL_S = 7 * 86_400
MAX_TTL_S = 30 * 86_400

_TYPE = re.compile(EVENT_TYPE_PATTERN)


def check_type(event_type: str) -> str:
    if not _TYPE.match(event_type):
        raise InvalidParameter(
            f"Invalid event type {event_type!r}: 1 to 128 of A-Z a-z 0-9 . _ : -"
        )
    return event_type


def event_type_of(op: Operation) -> str | None:
    """The type a callback operation waits for, if it is an event wait."""
    if op.Type is not OperationType.CALLBACK or op.SubType != EVENT_SUBTYPE:
        return None
    name = op.Name or ""
    return name[len(EVENT_NAME_PREFIX) :] if name.startswith(EVENT_NAME_PREFIX) else None


def send(ex: Execution, ws: WorkingSet, event_type: str, payload: str | None, ttl_s: int) -> str:
    """Deliver an event: "delivered" to an open wait, or "buffered". Raises when closed."""
    if ex.status in TERMINAL_EXECUTION_STATUSES:
        raise ExecutionClosed(
            f"Durable execution {ex.arn} is {ex.status.value}: it takes no more events."
        )
    waiting = [
        stored
        for stored in ws.ops.values()
        if stored.op.Status is OperationStatus.STARTED and event_type_of(stored.op) == event_type
    ]
    if waiting:
        oldest = min(waiting, key=lambda s: s.create_seq)
        callbacks.complete(ex, ws, oldest.op.Id, payload, None)
        return "delivered"
    live = _live(ex, ws.now_ms)
    same_type = sum(1 for e in live if e.type == event_type)
    if same_type >= MAX_BUFFERED_PER_TYPE:
        raise EventBufferFull(
            f"Execution {ex.name} already holds {MAX_BUFFERED_PER_TYPE} unconsumed events of"
            f" type {event_type!r}; retry once its waits have taken some."
        )
    if len(live) >= MAX_BUFFERED_PER_EXECUTION:
        raise EventBufferFull(
            f"Execution {ex.name} already holds {MAX_BUFFERED_PER_EXECUTION} unconsumed events."
        )
    size = sum(_size(e) for e in live)
    event = BufferedEvent(
        type=event_type, payload=payload, sent_ms=ws.now_ms, expires_ms=ws.now_ms + ttl_s * 1000
    )
    if size + _size(event) > MAX_BUFFERED_BYTES:
        raise EventBufferFull(
            f"Execution {ex.name}'s unconsumed events would exceed {MAX_BUFFERED_BYTES} bytes."
        )
    ex.event_buffer = [*live, event]  # a new list: the snapshot's stays as loaded
    return "buffered"


def take_buffered(ex: Execution, ws: WorkingSet, op_id: str) -> None:
    """A wait was just recorded: complete it with the oldest live event of its type."""
    stored = ws.ops.get(op_id)
    event_type = event_type_of(stored.op) if stored else None
    if event_type is None or not ex.event_buffer:
        return
    live = _live(ex, ws.now_ms)
    for i, event in enumerate(live):
        if event.type == event_type:
            ex.event_buffer = live[:i] + live[i + 1 :]
            callbacks.complete(ex, ws, op_id, event.payload, None)
            return
    if len(live) != len(ex.event_buffer):
        ex.event_buffer = live


def _live(ex: Execution, now_ms: int) -> list[BufferedEvent]:
    """The buffer without expired events (they expire lazily, at the next change)."""
    return [e for e in ex.event_buffer if e.expires_ms > now_ms]


def _size(event: BufferedEvent) -> int:
    return len(event.type) + (len(event.payload.encode()) if event.payload else 0)
