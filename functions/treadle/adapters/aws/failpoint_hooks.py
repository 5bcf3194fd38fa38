"""Failpoints of the AWS backend (tests only; `treadle/failpoints.py`).

The embedded backend's commits all pass through `SqliteFile.transaction`; the AWS
adapters' writes all pass through the DynamoDB client, so the `commit` boundary is a
botocore hook on every write operation of that client: `before` just before the
request leaves, `after` once its answer is parsed (the write applied or refused).
The hooks are only registered when a failpoint is set: production clients carry no
extra handler. `ref` (DynamoRefStore.compare_and_swap) and `timer`
(sqs_dispatcher.handle_messages) call the hook where they act, like their SQLite twins.
"""

from __future__ import annotations

from typing import Any, Final

from treadle import failpoints
from treadle.failpoints import Kind

WRITES: Final = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def _before(**_: Any) -> None:
    failpoints.boundary(Kind.COMMIT, "before")


def _after(**_: Any) -> None:
    failpoints.boundary(Kind.COMMIT, "after")


def register(dynamodb: Any) -> None:
    """Make every write of `dynamodb` a `commit` boundary, if failpoints are on."""
    if not failpoints.enabled():
        return
    events = dynamodb.meta.events
    for operation in WRITES:
        events.register(f"before-call.dynamodb.{operation}", _before, unique_id=f"fp-b-{operation}")
        events.register(f"after-call.dynamodb.{operation}", _after, unique_id=f"fp-a-{operation}")
