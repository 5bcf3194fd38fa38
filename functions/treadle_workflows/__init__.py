"""Helpers Treadle provides beside the durable SDK, for tenant code (`docs/events.md`).

    from treadle_workflows import sleep_until, wait_for_event

    approval = wait_for_event(context, "approval", timeout=Duration.from_days(7))
    sleep_until(context, datetime(2030, 1, 1, tzinfo=timezone.utc))

Both are built from the SDK's own operations (a callback, a step and a wait), so the
history, the replay and the checkpoints stay the SDK's; this module only names them
the way the platform recognises. It imports nothing of the platform.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from aws_durable_execution_sdk_python.config import CallbackConfig, Duration
from aws_durable_execution_sdk_python.serdes import JsonSerDes

__all__ = ["EVENT_NAME_PREFIX", "EVENT_SUBTYPE", "send_event", "sleep_until", "wait_for_event"]

# The platform's side of the convention: `treadle.domain.engine.events`.
EVENT_SUBTYPE = "Event"
EVENT_NAME_PREFIX = "event:"
_TYPE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def wait_for_event(context: Any, event_type: str, timeout: Duration | None = None) -> Any:
    """Wait for the next event of `event_type` sent to this execution; return its payload.

    An event sent before this wait was buffered and is taken at once (oldest first); one
    sent while it is open completes it. `timeout` (default: none) ends the wait with the
    SDK's CallbackTimeoutError. Each call is one wait: a loop of calls takes a stream.
    """
    if not _TYPE.match(event_type):
        raise ValueError(f"Invalid event type {event_type!r}: 1 to 128 of A-Z a-z 0-9 . _ : -")
    config = CallbackConfig(
        timeout=timeout or Duration(), serdes=JsonSerDes(), sub_type=EVENT_SUBTYPE
    )
    callback = context.create_callback(name=EVENT_NAME_PREFIX + event_type, config=config)
    return callback.result()


def sleep_until(context: Any, when: datetime | float, name: str | None = None) -> None:
    """Wait until `when` (an aware datetime, or epoch seconds): never earlier, to the second.

    The seconds left are computed once, inside a step, so a replay waits for the same
    instant rather than recomputing from a later clock. An instant already past (when
    the step ran) waits not at all.
    """
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("sleep_until needs an aware datetime (with tzinfo)")
        target = when.timestamp()
    else:
        target = float(when)
    label = name or "sleep_until"

    def seconds_left(_step_context: Any) -> int:
        return max(0, math.ceil(target - time.time()))

    seconds = context.step(seconds_left, name=f"{label} (seconds left)")
    if seconds >= 1:
        context.wait(Duration.from_seconds(seconds), name=label)


class EventRefused(Exception):
    """The platform refused the event: `status` (404 no such execution of this tenant,
    409 closed, 429 its buffer is full) and the platform's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def send_event(
    event_type: str,
    payload: Any = None,
    *,
    execution_arn: str | None = None,
    function: str | None = None,
    execution_name: str | None = None,
) -> dict[str, Any]:
    """From tenant code: send an event to an execution of the same tenant, by ARN or by
    function and execution name (as `/v1` senders do), signed with the function's own
    credentials at its endpoint. Inside a durable step it is a side effect: at least
    once, like every step's (a re-run step sends again)."""
    if (execution_arn is None) == (function is None or execution_name is None):
        raise ValueError("give execution_arn, or function and execution_name")
    if execution_arn is not None:
        path = f"/v1/executions/{urllib.parse.quote(execution_arn, safe='')}/events"
    else:
        path = f"/v1/functions/{function}/executions/{execution_name}/events"
    key = f"{os.environ.get('AWS_ACCESS_KEY_ID', '')}:{os.environ.get('AWS_SECRET_ACCESS_KEY', '')}"
    request = urllib.request.Request(
        os.environ.get("AWS_ENDPOINT_URL_LAMBDA", "").rstrip("/") + path,
        data=json.dumps({"type": event_type, "payload": payload}).encode(),
        method="POST",
        headers={
            "authorization": "Basic " + base64.b64encode(key.encode()).decode(),
            "content-type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
            return answer
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", {}).get("message", "")
        except ValueError:
            message = str(exc.reason)
        raise EventRefused(exc.code, message) from None
