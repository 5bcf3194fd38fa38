"""The SQS Dispatcher (the AWS twin of the in-process scheduler) and its consumer side.

Producer: `SqsDispatcher.dispatch` sends every timer due within `max_delay_s` (SQS's
ceiling is 15 minutes) as one message whose DelaySeconds is the time left, rounded
*up* to whole seconds so that a message never arrives before its timer is due. Later
timers are returned: they stay rows in the table and `sweep` sends them once they are
within reach.

Consumer: `handle_messages` is the body of the orchestrator's SQS handler. The queue is
a standard queue (FIFO queues have no per-message delay), so delivery is at least once,
and a message may be stale: the timer it names may have fired, been cleared or moved
(an invocation lease is re-set at every drive, a heartbeat timeout at every heartbeat).
The engine does not tell such a timer from a current one on every path (an INVOKE timer
fired while an invocation holds the lease reads as "the lease ran out"), so every
message is checked against the table (`TimerLookup`) before `fire`; a stale one is
acknowledged and dropped. Two copies of one current timer processed at the same instant
both pass that check; the engine tells them apart (an INVOKE timer due no later than
the running invocation's start is a copy of the one that started it, and does nothing),
and the other kinds act on their operation's state, which the first copy changed (the
sqs rows of tests/integration/test_aws_faults.py check it end to end).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from treadle.adapters.aws.errors import THROTTLING_CODES, TRANSIENT_CODES, error_code
from treadle.domain.errors import InvalidParameter, Throttled, TreadleError, Unavailable
from treadle.domain.ports import Clock, Dispatcher, Timer, TimerKind, TimerLookup
from treadle.failpoints import Kind, boundary

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

MAX_DELAY_S: Final = 900  # SQS's DelaySeconds ceiling
BATCH_MAX: Final = 10  # SendMessageBatch's entry limit
MESSAGE_VERSION: Final = 1
# A batch entry that failed on the service's side (not the sender's) is sent again.
_SEND_ATTEMPTS: Final = 4
_SEND_BACKOFF_S: Final = 0.05
_SQS_THROTTLING: Final = THROTTLING_CODES | {"RequestThrottled", "KmsThrottled"}


class QueueUnusable(TreadleError):
    """The queue is missing, not ours or not allowed: an operator must act first."""


# -- wire format -----------------------------------------------------------------------


def encode_timer(timer: Timer) -> str:
    return json.dumps(
        {
            "v": MESSAGE_VERSION,
            "arn": timer.arn,
            "kind": timer.kind.value,
            "op_id": timer.op_id,
            "due_ms": timer.due_ms,
        },
        separators=(",", ":"),
    )


def decode_timer(body: str) -> Timer:
    """The timer of a message body; ValueError if the body is not one."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("v") != MESSAGE_VERSION:
            raise ValueError("not a timer message of a known version")
        arn, op_id, due = data["arn"], data["op_id"], data["due_ms"]
        if not isinstance(arn, str) or not isinstance(op_id, str) or type(due) is not int:
            raise ValueError("malformed timer fields")
        return Timer(arn, TimerKind(data["kind"]), op_id, due)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed timer message: {exc}") from exc


# -- producer --------------------------------------------------------------------------


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _SQS_THROTTLING:
            raise Throttled(f"{action}: SQS is throttling ({code}); back off.") from exc
        if code in TRANSIENT_CODES or status >= 500:
            raise Unavailable(f"{action}: SQS failed transiently ({code}).") from exc
        raise QueueUnusable(f"{action}: {code}: {exc}") from exc
    except BotoCoreError as exc:
        raise Unavailable(f"{action}: SQS is unreachable ({exc}).") from exc


class SqsDispatcher:
    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        *,
        max_delay_s: int = MAX_DELAY_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 <= max_delay_s <= MAX_DELAY_S:
            raise ValueError(f"max_delay_s must be within 0..{MAX_DELAY_S}")
        self._client = client
        self._queue_url = queue_url
        self._max_delay_s = max_delay_s
        self._sleep = sleep

    @property
    def horizon_ms(self) -> int:
        return self._max_delay_s * 1000

    def delay_s(self, timer: Timer, now_ms: int) -> int:
        # Rounded up: early delivery would fire a wait before its end.
        return min(max(0, math.ceil((timer.due_ms - now_ms) / 1000)), self._max_delay_s)

    def dispatch(self, timers: Sequence[Timer], now_ms: int) -> list[Timer]:
        ready: list[Timer] = []
        later: list[Timer] = []
        for timer in dict.fromkeys(timers):  # the same timer twice is one message
            (ready if timer.due_ms - now_ms <= self.horizon_ms else later).append(timer)
        unsent = 0
        first_error: TreadleError | None = None
        for start in range(0, len(ready), BATCH_MAX):
            # One failing batch must not keep the others from being sent.
            try:
                self._send(ready[start : start + BATCH_MAX], now_ms)
            except TreadleError as exc:
                unsent += len(ready[start : start + BATCH_MAX])
                first_error = first_error or exc
        if first_error is not None:
            log.warning("%d of %d timers not sent; the sweep resends them", unsent, len(ready))
            raise first_error
        return later

    def _send(self, batch: Sequence[Timer], now_ms: int) -> None:
        pending: dict[str, SendMessageBatchRequestEntryTypeDef] = {
            str(i): {
                "Id": str(i),
                "MessageBody": encode_timer(timer),
                "DelaySeconds": self.delay_s(timer, now_ms),
            }
            for i, timer in enumerate(batch)
        }
        for attempt in range(_SEND_ATTEMPTS):
            with _translated(f"send {len(pending)} timers to {self._queue_url}"):
                response = self._client.send_message_batch(
                    QueueUrl=self._queue_url, Entries=list(pending.values())
                )
            failed = response.get("Failed", [])
            if not failed:
                return
            refused = [f for f in failed if f.get("SenderFault")]
            if refused:
                reason = refused[0].get("Message", refused[0].get("Code", ""))
                raise InvalidParameter(f"SQS refused {len(refused)} timer messages: {reason}")
            pending = {f["Id"]: pending[f["Id"]] for f in failed}
            self._sleep(_SEND_BACKOFF_S * 2**attempt)
        raise Unavailable(f"SQS kept failing {len(pending)} timer messages.")


# -- consumer --------------------------------------------------------------------------


class _SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def handle_messages(
    records: Sequence[Mapping[str, Any]],
    fire: Callable[[Timer], None],
    *,
    current: TimerLookup | None = None,
    requeue: Dispatcher | None = None,
    clock: Clock | None = None,
    max_workers: int = BATCH_MAX,
) -> list[str]:
    """Fire the timers of one SQS batch; return the message ids that failed.

    `records` are the Lambda SQS event's records (`messageId`, `body`). The caller
    answers `{"batchItemFailures": [...]}` (see `batch_response`), so only failed
    messages come back (after the visibility timeout) and the others are deleted.

    - A malformed message fails, so that the redrive policy parks it in the DLQ.
    - A message early for its timer (clock skew) is sent again for the time left
      through `requeue` and acknowledged (without `requeue` it fails and returns).
    - A timer the table no longer holds (`current`) is acknowledged without firing.
    - The same timer twice in one batch fires once.
    Timers fire in parallel: one is a whole tenant invocation, up to 15 minutes.
    """
    now = (clock or _SystemClock()).now_ms
    failed: set[str] = set()
    work: dict[Timer, str] = {}
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            timer = decode_timer(str(record.get("body", "")))
        except ValueError as exc:
            log.error("message %s is not a timer: %s", message_id, exc)
            failed.add(message_id)
            continue
        if timer in work:
            log.info("timer %s twice in one batch; firing it once", timer)
            continue
        work[timer] = message_id

    def one(timer: Timer) -> bool:
        try:
            if timer.due_ms > now():
                if requeue is None:
                    return False
                # Whatever it does not take is still a row: the sweep sends it later.
                requeue.dispatch([timer], now())
                return True
            if current is not None and not current.is_set(timer):
                log.debug("stale timer %s dropped", timer)
                return True
            boundary(Kind.TIMER, "before")
            fire(timer)
            boundary(Kind.TIMER, "after")
            return True
        except Exception:  # reported as this message's failure; SQS redelivers it
            log.exception("timer %s failed", timer)
            return False

    timers = list(work)
    if len(timers) <= 1 or max_workers <= 1:
        results = [one(timer) for timer in timers]
    else:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(timers))) as pool:
            results = list(pool.map(one, timers))
    failed.update(work[timer] for timer, ok in zip(timers, results, strict=True) if not ok)
    return [str(r.get("messageId", "")) for r in records if str(r.get("messageId", "")) in failed]


def batch_response(failed_ids: Sequence[str]) -> dict[str, list[dict[str, str]]]:
    """The SQS event source's partial-batch response (ReportBatchItemFailures)."""
    return {"batchItemFailures": [{"itemIdentifier": i} for i in failed_ids]}
