"""Builders of history events, one per accepted change, in the wire shape of AWS.

Payload-carrying fields follow AWS: `{"Payload": ...}` for inputs and results and
`{"Payload": ErrorObject}` for errors, so `IncludeExecutionData=false` can strip them.
"""

from __future__ import annotations

import json
from typing import Any

from treadle.domain.models import ErrorObject, Event, Operation


class EventLog:
    """Appends events with dense ids to a commit's event list, and sums the payload
    bytes they persist (what `maxHistoryBytesPerExecution` counts, `engine/limits.py`)."""

    def __init__(self, next_id: int, events: list[Event]) -> None:
        self.next_id = next_id
        self.events = events
        self.payload_bytes = 0

    def add(
        self,
        event_type: str,
        ts_ms: int,
        details: dict[str, Any],
        op: Operation | None = None,
        *,
        op_id: str | None = None,
        name: str | None = None,
    ) -> Event:
        self.payload_bytes += persisted_bytes(details)
        fields: dict[str, Any] = {f"{event_type}Details": details}
        event = Event(
            EventType=event_type,
            EventId=self.next_id,
            EventTimestamp=ts_ms,
            SubType=op.SubType if op else None,
            Id=op.Id if op else op_id,
            Name=op.Name if op else name,
            ParentId=op.ParentId if op else None,
            **fields,
        )
        self.next_id += 1
        self.events.append(event)
        return event


def payload(value: str | None) -> dict[str, Any]:
    # Payloads are stored whole (size limits are enforced at the door), so never truncated.
    return {"Payload": value, "Truncated": False} if value is not None else {}


def error_payload(error: ErrorObject | None) -> dict[str, Any]:
    return {"Payload": error.wire(), "Truncated": False} if error is not None else {}


def retry_details(attempt: int, delay_s: int | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"CurrentAttempt": attempt}
    if delay_s is not None:
        details["NextAttemptDelaySeconds"] = delay_s
    return details


_PAYLOAD_KEYS = ("Input", "Result", "Error")


def payload_size(value: str | dict[str, Any] | None) -> int:
    """Bytes of one persisted payload: a JSON text as sent, an error object as compact
    JSON (the size the store writes, give or take its framing)."""
    if value is None:
        return 0
    if isinstance(value, str):
        # ASCII (most JSON) is one byte a character: no copy to count it.
        return len(value) if value.isascii() else len(value.encode())
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def persisted_bytes(details: dict[str, Any]) -> int:
    """The payload bytes an event's details carry (inputs, results, errors)."""
    total = 0
    for key in _PAYLOAD_KEYS:
        field = details.get(key)
        if isinstance(field, dict):
            total += payload_size(field.get("Payload"))
    return total


def strip_execution_data(event: dict[str, Any]) -> dict[str, Any]:
    """Drop inputs, results and error payloads, as `IncludeExecutionData=false` asks."""
    out = dict(event)
    for key, value in event.items():
        if key.endswith("Details") and isinstance(value, dict):
            details = dict(value)
            for pk in _PAYLOAD_KEYS:
                if isinstance(details.get(pk), dict) and "Payload" in details[pk]:
                    details[pk] = {"Truncated": True}
            out[key] = details
    return out
