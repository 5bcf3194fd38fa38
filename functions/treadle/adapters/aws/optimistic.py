"""The optimistic-write toolkit of the DynamoDB stores (functions, refs, tenants, executions).

Key ideas:

- **Write on a condition, not under a lock.** Every change is one conditional write or
  one TransactWriteItems conditioned on what was read (a counter, a sequence number,
  `attribute_not_exists(pk)`). A refused or cancelled write applied nothing, so the
  writer may re-read and try again.
- **Lost the race vs. refused for good** (`lost_race`): a failed condition or a
  conflicting transaction may be another writer that got there first, which re-reading
  resolves; throttling, validation or a missing table are not races, and are raised as
  the domain's errors (`errors.transaction_error`).
- **One backoff** (`backoff`), jittered so that writers that collided once do not
  collide again in lockstep; a bounded number of tries (`ATTEMPTS`) before
  `ConcurrentModification`.
- **Fence, then purge.** A record is a head item and children in its partition (a
  function and its versions, a repository and its refs). While they fit one transaction
  (100 items) a delete is atomic, conditioned on the head being unchanged since the
  children were listed. A bigger record is first *fenced* (the head gains `deleting`
  and leaves its listing, in one transaction): every reader then treats it as absent and
  every conditional write on it (`LIVE`) is refused; then *purged* (children
  batch-deleted, the head last, on condition of the fence). A purge interrupted by a
  crash leaves a tombstone: the next delete finishes it, and so does a create of the
  same name (`FencedRecord.create`: create over the tombstone).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from treadle.adapters.aws.errors import (
    cancellation_codes,
    error_code,
    transaction_error,
    translated,
)
from treadle.adapters.aws.items import key
from treadle.domain.errors import ConcurrentModification, TreadleError, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    from treadle.adapters.aws.dynamo import Table

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

R = TypeVar("R")

# TransactWriteItems takes at most 100 items.
TRANSACTION_MAX: Final = 100
# Lost races resolved by re-reading before ConcurrentModification.
ATTEMPTS: Final = 10
# Tries of a write that touches a tenant's counter shard, which concurrent starts and
# closes of that tenant's executions share (a TransactionConflict cancels the loser).
CONFLICT_ATTEMPTS: Final = 4
# The fence of a record being deleted in two steps.
DELETING: Final = "deleting"
# The head exists and is not fenced (needs "#deleting" among the names).
LIVE: Final = "attribute_exists(pk) AND attribute_not_exists(#deleting)"

_RACE_REASONS: Final = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


def backoff(attempt: int, *, base_s: float = 0.01, cap_s: float = 0.5, jitter: bool = True) -> None:
    """Sleep before try `attempt + 1`: exponential, capped, jittered unless told not to."""
    delay = min(base_s * 2**attempt, cap_s)
    time.sleep(random.uniform(0, delay) if jitter else delay)


def lost_race(exc: ClientError) -> bool:
    """Whether a refused write may have lost a race: re-reading tells, then retrying may help.

    True for a failed condition, alone or among the reasons of a cancelled transaction,
    and for a transaction cancelled by a conflicting one.
    """
    code = error_code(exc)
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    return any(c in _RACE_REASONS for c in cancellation_codes(exc))


def raise_unless_lost_race(exc: ClientError, action: str) -> None:
    """Return if a cancelled transaction lost a race (re-read and retry); else raise."""
    if lost_race(exc):
        return
    raise transaction_error(exc, action, [], ConcurrentModification) from exc


def retry_conflicts(write: Callable[[], R]) -> R:
    """Run `write` again, after a short backoff, while it raises ConcurrentModification.

    Only for writes whose every try is computed afresh or cancelled whole (a transaction).
    """
    for attempt in range(CONFLICT_ATTEMPTS - 1):
        try:
            return write()
        except ConcurrentModification:
            log.debug("write conflicted (try %d); retrying", attempt + 1)
            backoff(attempt, base_s=0.02, cap_s=1.0, jitter=False)
    return write()


def transact(
    table: Table,
    items: list[TransactWriteItemTypeDef],
    action: str,
    labels: Sequence[str],
    refused: Callable[[str], TreadleError],
) -> None:
    """One TransactWriteItems whose failures are raised as domain errors.

    `labels[i]` names the i-th item; `refused(label)` is the error of its failed
    condition (see `errors.transaction_error`).
    """
    try:
        table.transact(items)
    except ClientError as exc:
        raise transaction_error(exc, action, labels, refused) from exc
    except BotoCoreError as exc:  # connection reset, read timeout, endpoint unreachable
        raise Unavailable(f"{action}: the store is unreachable ({exc}).") from exc


@contextmanager
def conditional(action: str, refused: TreadleError | None) -> Iterator[None]:
    """One conditional write: a failed condition raises `refused` (None: it is ignored).

    Every other failure is translated into the domain's errors.
    """
    with translated(action):
        try:
            yield
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            if refused is not None:
                raise refused from None


class Condition(NamedTuple):
    """A condition expression with the names and values it refers to."""

    expression: str
    names: Mapping[str, str]
    values: Mapping[str, AttributeValueTypeDef]


@dataclass(frozen=True)
class FencedRecord:
    """A head item and its children in one partition, deleted by fence-then-purge.

    `children` lists the children's sort keys (read after the head, whose condition
    then fences them); `listing` is the key of the record's entry in its listing,
    written and removed in the same transactions as the head.
    """

    table: Table
    pk: str
    head_sk: str
    listing: Item
    children: Callable[[], list[str]] = field(compare=False)

    def head(self, action: str) -> Item | None:
        """The head item, fenced or not."""
        return self.table.get(key(self.pk, self.head_sk), action)

    def create(
        self, items: list[TransactWriteItemTypeDef], exists: TreadleError, action: str
    ) -> None:
        """Write `items` (the head's put first, on `attribute_not_exists(pk)`).

        A refused head is `exists`, unless it is the tombstone of an interrupted delete:
        that delete is finished, then the create tried again.
        """
        for _ in range(2):
            try:
                self.table.transact(items)
                return
            except ClientError as exc:
                error = transaction_error(exc, action, ["head"], lambda _label: exists)
                if error is not exists:
                    raise error from exc
            leftover = self.head(action)
            if leftover is None or DELETING not in leftover:
                raise exists
            log.warning("finishing the interrupted deletion of %s", self.pk)
            self.purge()
        raise ConcurrentModification(f"{action}: the name is being created and deleted.")

    def delete(
        self,
        unchanged: Callable[[Item], Condition],
        missing: TreadleError,
        action: str,
        extra: Callable[[Item, list[str]], list[TransactWriteItemTypeDef]] | None = None,
        audit: Sequence[TransactWriteItemTypeDef] = (),
    ) -> None:
        """Atomic while the record fits one transaction; else fenced, then purged.

        `unchanged(head)` is the condition that no write landed on the record since its
        head was read (so the children listed after it are all of them). `extra(head,
        children)`: items for the transaction that makes the record disappear (the
        tenant's counters); with it, the fence is conditioned on `unchanged` too.
        `audit`: the change's audit record, in that same transaction.
        """
        for attempt in range(ATTEMPTS):
            head = self.head(action)
            if head is None:
                raise missing
            if DELETING in head:
                self.purge()
                return
            children = self.children()
            more = [*(extra(head, children) if extra is not None else []), *audit]
            fits = len(children) + 2 + len(more) <= TRANSACTION_MAX
            items = (
                [self._delete_head(unchanged(head)), self._unlist(), *self._deletes(children)]
                if fits
                else [self._fence(unchanged(head) if extra is not None else None), self._unlist()]
            ) + more
            try:
                self.table.transact(items)
            except ClientError as exc:
                raise_unless_lost_race(exc, action)
                backoff(attempt)
                continue
            if not fits:
                log.info("fenced %s (%d items) for deletion", self.pk, len(children))
                self.purge()
            return
        raise ConcurrentModification(f"{action}: the record kept changing while deleted; retry.")

    def purge(self) -> None:
        """Remove every child of a fenced record, then its head."""
        self.table.batch_delete([(self.pk, sk) for sk in self.children()], f"purge {self.pk}")
        # Refused: another delete finished the purge first (and maybe re-created the name).
        with conditional(f"purge {self.pk}", None):
            self.table.client.delete_item(
                TableName=self.table.name,
                Key=key(self.pk, self.head_sk),
                ConditionExpression="attribute_exists(#deleting)",
                ExpressionAttributeNames={"#deleting": DELETING},
            )

    def _delete_head(self, condition: Condition) -> TransactWriteItemTypeDef:
        return {
            "Delete": {
                "TableName": self.table.name,
                "Key": key(self.pk, self.head_sk),
                "ConditionExpression": condition.expression,
                "ExpressionAttributeNames": condition.names,
                "ExpressionAttributeValues": condition.values,
            }
        }

    def _fence(self, condition: Condition | None = None) -> TransactWriteItemTypeDef:
        """Mark the head deleting, if it is live (and `condition` holds, when given)."""
        names: dict[str, str] = {"#deleting": DELETING}
        values: dict[str, AttributeValueTypeDef] = {":true": {"BOOL": True}}
        if condition is not None:
            names.update(condition.names)
            values.update(condition.values)
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": key(self.pk, self.head_sk),
                "UpdateExpression": "SET #deleting = :true",
                "ConditionExpression": f"{LIVE} AND ({condition.expression})"
                if condition
                else LIVE,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _unlist(self) -> TransactWriteItemTypeDef:
        return {"Delete": {"TableName": self.table.name, "Key": self.listing}}

    def _deletes(self, sks: Sequence[str]) -> list[TransactWriteItemTypeDef]:
        return [{"Delete": {"TableName": self.table.name, "Key": key(self.pk, sk)}} for sk in sks]
