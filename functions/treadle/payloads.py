"""Payloads as people read them: the SDK's extended-types envelope decoded.

Shared by the CLI (`treadle.cli.render`) and the web console.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

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


@functools.cache
def _sdk_deserialize() -> Callable[[str], Any]:
    """The SDK's decoder, imported on first use: the SDK (and the boto3 it imports) is a
    sixth of `treadle dev`'s start, and only the console's and CLI's readers need it."""
    from aws_durable_execution_sdk_python.serdes import EXTENDED_TYPES_SERDES, SerDesContext

    return lambda raw: EXTENDED_TYPES_SERDES.deserialize(raw, SerDesContext("", ""))


def decoded_payload(raw: Any) -> Any:
    if not isinstance(raw, str):
        return decoded(raw)
    try:
        return _sdk_deserialize()(raw)
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
