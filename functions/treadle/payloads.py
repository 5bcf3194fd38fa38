"""Payloads as people read them: the SDK's extended-types envelope decoded.

Shared by the CLI (`treadle.cli.render`) and the web console.
"""

from __future__ import annotations

import json
from typing import Any

from aws_durable_execution_sdk_python.serdes import EXTENDED_TYPES_SERDES, SerDesContext

# Fields that hold a payload as the SDK serialises it.
_PAYLOADS = frozenset({"Payload", "Result", "InputPayload"})


def decoded(value: Any) -> Any:
    """A history detail or execution with its payloads decoded as the SDK encodes them (its
    extended-types envelope, `{"t": ..., "v": ...}`), for people to read."""
    if isinstance(value, dict):
        return {k: decoded_payload(v) if k in _PAYLOADS else decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def decoded_payload(raw: Any) -> Any:
    if not isinstance(raw, str):
        return decoded(raw)
    try:
        return EXTENDED_TYPES_SERDES.deserialize(raw, SerDesContext("", ""))
    except Exception:  # not the SDK's envelope: plain JSON, or text
        try:
            return json.loads(raw)
        except ValueError:
            return raw


def event_details(event: dict[str, Any]) -> dict[str, Any]:
    """A history event's `...Details` object, decoded, without the timestamps the row shows."""
    details: dict[str, Any] = next((v for k, v in event.items() if k.endswith("Details")), {})
    shown: dict[str, Any] = decoded(
        {k: v for k, v in details.items() if k not in ("StartTimestamp", "EndTimestamp")}
    )
    return shown
