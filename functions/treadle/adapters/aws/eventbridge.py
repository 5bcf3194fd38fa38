"""EventBridge adapter of `EventPublisher`: every status change, put on a bus.

Entries are AWS's "Durable Execution Status Change" events (`domain/notifications`),
with the configured source (`TREADLE_EVENT_SOURCE`), so a rule written for Lambda's
own events needs only its `source` changed. PutEvents takes 10 entries per call; an
entry EventBridge refuses (`FailedEntryCount`) fails the batch, which the outbox keeps
and the relay sends again (receivers deduplicate on the event `id`, which EventBridge
does not use: a retry may deliver an event twice, as EventBridge itself may).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from treadle.adapters.aws.errors import translated
from treadle.domain.errors import Unavailable
from treadle.domain.notifications import DETAIL_TYPE, StatusEvent, envelope

PUT_EVENTS_MAX = 10


class EventBridgePublisher:
    def __init__(self, client: Any, bus: str, source: str) -> None:
        self._client = client
        self._bus = bus
        self._source = source

    def publish(self, events: Sequence[StatusEvent]) -> None:
        for start in range(0, len(events), PUT_EVENTS_MAX):
            chunk = events[start : start + PUT_EVENTS_MAX]
            entries = [
                {
                    "Source": self._source,
                    "DetailType": DETAIL_TYPE,
                    "Detail": json.dumps(envelope(e, self._source)["detail"]),
                    "Resources": [e.arn],
                    "EventBusName": self._bus,
                }
                for e in chunk
            ]
            with translated(f"put {len(entries)} events on {self._bus}", "EventBridge"):
                response = self._client.put_events(Entries=entries)
            failed = int(response.get("FailedEntryCount", 0))
            if failed:
                codes = sorted({str(r.get("ErrorCode")) for r in response.get("Entries", [])})
                raise Unavailable(
                    f"EventBridge refused {failed} of {len(entries)} events: {', '.join(codes)}."
                )
