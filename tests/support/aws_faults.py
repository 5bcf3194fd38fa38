"""Faults injected into the AWS backend's boto3 clients (tests/integration/test_aws_faults.py).

Each fault is a botocore event hook on one client of the server under test:

- `before-call.<service>.<op>` returning a response: the call fails as the service
  would fail it *after* the SDK's own retries gave up (the handler short-circuits the
  whole call, retries included), so Treadle's code meets the error itself;
- `before-call` raising `ReadTimeoutError`: the request never arrived;
- `after-call` raising `ReadTimeoutError`: the request was applied and its answer lost
  (a caller's retry then meets the consequence, e.g. a real ConditionalCheckFailed);
- `after-call.sqs.ReceiveMessage` editing the parsed answer: SQS delivering a message
  twice, late, or to two consumers at once (a visibility timeout that ran out while the
  first consumer still works).

Which calls fail is drawn from `random.Random(seed)`, at most `limit` of them, and only
once the arm file exists (the test arms after preparing, so start-up and deploys are
clean). Every injection is appended to a JSON-lines log the test reads: a fault that was
never injected proves nothing, and the test says so.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

Effect = Literal[
    "error", "timeout-before", "timeout-after", "twice", "late", "concurrent", "invoke-timeout"
]
DDB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
ANY_OP = ("*",)


@dataclass(frozen=True)
class Fault:
    name: str
    service: str  # botocore's service id: dynamodb, sqs, s3, lambda
    operations: tuple[str, ...]
    effect: Effect
    where: str  # for the documentation's table
    code: str = ""
    status: int = 400
    rate: float = 0.2
    limit: int = 8
    thread_prefix: str = ""  # only calls made on threads named so
    key_part: str = ""  # S3: only keys containing this


FAULTS = {
    f.name: f
    for f in (
        Fault(
            "ddb-throttled",
            "dynamodb",
            ANY_OP,
            "error",
            "DynamoDB, any call (API, engine, orchestrator, sweep)",
            code="ProvisionedThroughputExceededException",
            rate=0.1,
        ),
        Fault(
            "ddb-throttled-orchestrator",
            "dynamodb",
            ANY_OP,
            "error",
            "DynamoDB, calls of the orchestrator firing a timer",
            code="ProvisionedThroughputExceededException",
            # Fewer than the queue's maxReceiveCount (5): no message reaches the DLQ.
            rate=0.3,
            limit=4,
            thread_prefix="orchestrator",
        ),
        Fault(
            "ddb-transaction-conflict",
            "dynamodb",
            ("TransactWriteItems",),
            "error",
            "DynamoDB TransactWriteItems: TransactionCanceled (TransactionConflict)",
            code="TransactionCanceledException",
            rate=0.3,
        ),
        Fault(
            "ddb-timeout",
            "dynamodb",
            ANY_OP,
            "timeout-before",
            "DynamoDB, any call: read timeout, request not applied",
            rate=0.1,
        ),
        Fault(
            "ddb-answer-lost",
            "dynamodb",
            DDB_WRITES,
            "timeout-after",
            "DynamoDB writes: applied, answer lost (the retry meets ConditionalCheckFailed)",
            rate=0.15,
        ),
        Fault(
            "sqs-twice",
            "sqs",
            ("ReceiveMessage",),
            "twice",
            "SQS: a timer message delivered again at the next receive",
            rate=0.5,
        ),
        Fault(
            "sqs-late",
            "sqs",
            ("ReceiveMessage",),
            "late",
            "SQS: a copy of a timer message delivered 3 s late",
            rate=0.5,
        ),
        Fault(
            "sqs-concurrent",
            "sqs",
            ("ReceiveMessage",),
            "concurrent",
            "SQS: visibility timeout ran out, a second consumer while the first runs",
            rate=0.6,
        ),
        Fault(
            "s3-pack-503",
            "s3",
            ("PutObject",),
            "error",
            "S3 PutObject of a Git pack (git push)",
            code="SlowDown",
            status=503,
            rate=1.0,
            limit=2,
            key_part=".pack",
        ),
        Fault(
            "lambda-throttled",
            "lambda",
            ("Invoke",),
            "error",
            "Lambda Invoke of a tenant function",
            code="TooManyRequestsException",
            status=429,
            rate=0.3,
        ),
        Fault(
            "lambda-timeout",
            "lambda",
            ("Invoke",),
            "invoke-timeout",
            "Lambda Invoke: the function ran past its timeout (its answer lost)",
            rate=0.3,
            limit=3,
        ),
    )
}

LATE_S = 3.0


def error_response(fault: Fault, params: Any) -> tuple[AWSResponse, dict[str, Any]]:
    parsed: dict[str, Any] = {
        "Error": {"Code": fault.code, "Message": f"injected fault {fault.name}"},
        "ResponseMetadata": {"HTTPStatusCode": fault.status},
    }
    if fault.code == "TransactionCanceledException":
        items = json.loads(params.get("body") or b"{}").get("TransactItems", [])
        reasons = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(items) - 1)
        parsed["CancellationReasons"] = reasons
        parsed["Error"]["Message"] = "Transaction cancelled, please refer cancellation reasons"
    return AWSResponse("https://injected", fault.status, {}, None), parsed


class Injector:
    """The hooks of one fault on the clients it is given, and their log."""

    def __init__(self, fault: Fault | None, seed: int, log: Path, arm: Path) -> None:
        self.fault = fault
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._log = log
        self._arm = arm
        self._count = 0
        self._stash: list[tuple[float, dict[str, Any]]] = []

    def note(self, what: str, **detail: Any) -> None:
        line = json.dumps({"what": what, "thread": threading.current_thread().name, **detail})
        with self._lock, self._log.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    def _draw(self, operation: str, params: Any = None) -> bool:
        fault = self.fault
        if fault is None or not self._arm.exists():
            return False
        if fault.thread_prefix and not threading.current_thread().name.startswith(
            fault.thread_prefix
        ):
            return False
        if fault.key_part and fault.key_part not in str((params or {}).get("url_path", "")):
            return False
        with self._lock:
            if self._count >= fault.limit or self._random.random() >= fault.rate:
                return False
            self._count += 1
        self.note("injected", fault=fault.name, operation=operation)
        return True

    def install(self, client: Any, service: str) -> None:
        events = client.meta.events
        if service == "sqs":
            events.register("before-call.sqs.ChangeMessageVisibility", self._redelivery)
        fault = self.fault
        # Lambda's Invoke is answered by the local sandbox (support/faulty_server.py),
        # which asks `invoke_refused` and `invoke_timed_out` itself.
        if fault is None or fault.service != service or service == "lambda":
            return
        for operation in fault.operations:
            suffix = "" if operation == "*" else f".{operation}"
            if fault.effect in ("error", "timeout-before"):
                events.register(f"before-call.{service}{suffix}", self._before)
            elif fault.effect == "timeout-after":
                events.register(f"after-call.{service}{suffix}", self._after)
            elif fault.effect in ("twice", "late", "concurrent"):
                events.register(f"after-call.{service}{suffix}", self._received)

    def _before(self, model: Any, params: Any, **_: Any) -> Any:
        assert self.fault is not None
        if not self._draw(model.name, params):
            return None
        if self.fault.effect == "timeout-before":
            raise ReadTimeoutError(endpoint_url=f"injected {self.fault.name}")
        return error_response(self.fault, params)

    def _after(self, model: Any, http_response: Any, **_: Any) -> None:
        if http_response.status_code < 300 and self._draw(model.name):
            raise ReadTimeoutError(endpoint_url=f"injected {model.name} answer lost")

    def _redelivery(self, params: Any, **_: Any) -> None:
        # The poller makes a failed record visible again: a partial-batch failure.
        self.note("redelivery")

    def _received(self, parsed: dict[str, Any], **_: Any) -> None:
        assert self.fault is not None
        messages: list[dict[str, Any]] = parsed.setdefault("Messages", [])
        now = time.monotonic()
        with self._lock:
            due = [m for at, m in self._stash if at <= now]
            self._stash = [(at, m) for at, m in self._stash if at > now]
        messages.extend(due)
        for message in list(messages):
            if message in due or not self._draw("ReceiveMessage"):
                continue
            again = copy.deepcopy(message)
            attributes = again.setdefault("Attributes", {})
            attributes["ApproximateReceiveCount"] = "2"
            if self.fault.effect == "concurrent":
                messages.append(again)  # two pool threads handle it at once
            else:
                delay = LATE_S if self.fault.effect == "late" else 0.0
                with self._lock:
                    self._stash.append((now + delay, again))
        if not messages:
            del parsed["Messages"]

    def invoke_timed_out(self) -> bool:
        return (
            self.fault is not None
            and self.fault.effect == "invoke-timeout"
            and self._draw("Invoke")
        )

    def invoke_refused(self, params: Any) -> Any:
        fault = self.fault
        if fault is None or fault.effect != "error" or fault.service != "lambda":
            return None
        return error_response(fault, params) if self._draw("Invoke") else None


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]
