"""`treadle dev --backend aws` plays the platform Lambdas that AWS would run for it.

- `QueuePoller` is the SQS event source plus the orchestrator Lambda: it long-polls the
  work queue and hands each message to the same `handle_messages` the orchestrator
  handler calls, deleting what succeeded and making a failure visible again soon.
- `Periodic` is the EventBridge schedule plus the sweep Lambda.

Messages are handled one by one on a pool rather than as batches: a batch would wait
for its slowest timer (a whole tenant invocation), and Lambda's concurrency, which
these threads stand in for, does not make unrelated messages wait for each other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

Handle = Callable[[Sequence[Mapping[str, Any]]], list[str]]

LONG_POLL_S: Final = 2  # short enough for a prompt stop, long enough to idle cheaply
MAX_BACKOFF_S: Final = 900
_ERROR_PAUSE_S: Final = 1.0


def retry_backoff_s(receive_count: int) -> int:
    """When a failed timer message is seen again: 2, 4, 8 ... s after its 1st, 2nd, 3rd
    ... receive, at most 15 minutes (after `maxReceiveCount` it goes to the DLQ and the
    sweep's overdue net takes over). Left alone it would wait out the queue's visibility
    timeout, an hour and a half."""
    return int(min(MAX_BACKOFF_S, 2 ** max(1, receive_count)))


def lambda_record(message: MessageTypeDef) -> dict[str, Any]:
    """A received message in the shape of a Lambda SQS event record."""
    return {
        "messageId": message.get("MessageId", ""),
        "receiptHandle": message.get("ReceiptHandle", ""),
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "eventSource": "aws:sqs",
    }


class QueuePoller:
    def __init__(
        self, sqs: SQSClient, queue_url: str, handle: Handle, *, workers: int = 64
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._handle = handle
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="orchestrator")
        # No more messages in flight than workers: a received message waiting for a
        # worker would only age towards its visibility timeout.
        self._slots = threading.Semaphore(workers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqs-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=LONG_POLL_S + 5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=1):
                continue
            free = 1
            while free < 10 and self._slots.acquire(blocking=False):
                free += 1
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=free,
                    WaitTimeSeconds=LONG_POLL_S,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                ).get("Messages", [])
            except Exception:  # an emulator restarting: keep polling
                log.exception("receiving from %s failed", self._queue_url)
                messages = []
                self._stop.wait(_ERROR_PAUSE_S)
            for _ in range(free - len(messages)):
                self._slots.release()
            for message in messages:
                self._pool.submit(self._one, lambda_record(message))

    def _one(self, record: dict[str, Any]) -> None:
        try:
            failed = self._handle([record])
            if failed:
                count = int(record["attributes"].get("ApproximateReceiveCount", "1"))
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=record["receiptHandle"],
                    VisibilityTimeout=retry_backoff_s(count),
                )
            else:
                self._sqs.delete_message(
                    QueueUrl=self._queue_url, ReceiptHandle=record["receiptHandle"]
                )
        except Exception:  # the message comes back after its visibility timeout
            log.exception("message %s could not be settled", record.get("messageId"))
        finally:
            self._slots.release()


class Periodic:
    """Calls `action` every `interval_s` seconds (first after one interval) until stopped."""

    def __init__(self, name: str, interval_s: float, action: Callable[[], object]) -> None:
        self._interval_s = interval_s
        self._action = action
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._action()
            except Exception:  # the next run tries again, as the schedule would
                log.exception("%s failed", self._thread.name)
