"""One commit of one execution as ONE TransactWriteItems (see `dynamodb_executions`).

The running counter: a commit whose META item gains or loses the `COUNTED` flag (the
execution starts or stops holding or awaiting an invocation: RUNNING with an INVOKE timer
among the timers after the commit, `domain/concurrency`) adds one update of its tenant's
counter shard. It is
decided from the flag of the META item at the version the commit is conditioned on, so
it moves exactly when that state change applies: a cancelled transaction moves nothing,
botocore's retries reuse the ClientRequestToken, and a commit replayed on top of an
applied one starts from a META item already flagged accordingly and moves nothing again.
The usage counters (by status, invocations in flight) ride on the same update of the
same shard, decided the same way from the META item's `usage_state` (`usage_items`);
a creation also bumps its minute's start bucket.

The 100-item limit: a commit needs at most 14 items (META, its batch of operations, its
events, its ClientToken response, the counter shard, the pin shard, its two audit items, at
creation the name guard and the start bucket, when the status changes its event's stream
and outbox items, and when it enters or leaves QUEUED the queue entry and backlog) plus
one per new callback, per timer it sets on another execution and per such timer it
clears. If that passes 100 (a checkpoint that starts more than ~94 callbacks), the
surplus callback items are written just before the transaction, marked unconfirmed:
`callback_owner` trusts them only once the operation they name holds that callback id,
which only the transaction writes, and a cancelled transaction leaves unreachable items
that TTL reclaims. Surplus clears of outbox timers are deleted just after the
transaction, each conditioned on the due time seen, so a timer set again meanwhile
survives; until then the sweep may see a cleared timer, which the engine ignores after
loading the execution. The counter update is placed before that count is taken, so it
always fits: only callbacks and outbox clears spill over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from treadle.adapters.aws import items as it
from treadle.adapters.aws import start_queue as sq
from treadle.adapters.aws import usage_items as us
from treadle.adapters.aws import version_pins as vp
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.dynamodb_audit import audit_writes
from treadle.adapters.aws.dynamodb_notifications import status_event_items
from treadle.adapters.aws.errors import error_code
from treadle.adapters.aws.optimistic import TRANSACTION_MAX, transact
from treadle.adapters.aws.payloads import PayloadCodec
from treadle.adapters.aws.tables import DUE_MS, PARTITION_KEY, SORT_KEY
from treadle.domain.audit import DEFAULT_RETENTION_DAYS, AuditRecord
from treadle.domain.errors import (
    ConcurrentModification,
    PayloadTooLarge,
    TreadleError,
)
from treadle.domain.models import Execution
from treadle.domain.ports import Commit, Timer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)


@dataclass
class CommitPlan:
    items: list[TransactWriteItemTypeDef] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    before: list[Item] = field(default_factory=list)  # unconfirmed callback items
    after: list[tuple[str, str, int]] = field(default_factory=list)  # outbox timers to clear
    timers: dict[str, int] = field(default_factory=dict)  # own timers once applied
    counted: bool = False  # the META item's COUNTED flag once applied
    usage: us.State | None = None  # the META item's usage state once applied


class CommitWriter:
    def __init__(
        self, table: Table, codec: PayloadCodec, audit_retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        self.table = table
        self.codec = codec
        self.audit_days = audit_retention_days

    def plan(
        self,
        commit: Commit,
        *,
        version: int,
        timers_before: dict[str, int],
        counted_before: bool,
        creating: bool,
        usage_before: us.State | None = None,
    ) -> CommitPlan:
        """`timers_before`, `counted_before`, `usage_before`: the META item at
        `version - 1` (see `usage_items`)."""
        ex = commit.execution
        arn = ex.arn
        plan = CommitPlan(
            timers={} if commit.clear_all_timers else dict(timers_before),
            usage=us.state_of(ex),
        )
        # Same order as the embedded store: clear all, clear some, then set.
        missed: set[str] = set()
        for kind, op_id in commit.clear_timers:
            name = it.timer_key(kind, op_id)
            if plan.timers.pop(name, None) is None:
                missed.add(name)
        foreign: list[Timer] = []
        for timer in commit.set_timers:
            if timer.arn == arn:
                plan.timers[it.timer_key(timer.kind, timer.op_id)] = timer.due_ms
            else:
                foreign.append(timer)
        plan.counted = it.counted(ex, plan.timers)
        doomed = [] if creating else self._outbox_timers(arn, missed, commit.clear_all_timers)

        meta = it.meta_item(
            ex, version, self.codec.encode(arn, it.record_json(ex, version)), plan.timers
        )
        meta[us.USAGE_STATE] = {"S": us.encode(us.state_of(ex))}
        if creating:
            self._put(plan, "meta", meta, absent=True)
            self._put(plan, "name", it.name_item(ex), absent=True)
        else:
            self._put(plan, "meta", meta, version=version - 1)
        running = 0 if plan.counted == counted_before else (1 if plan.counted else -1)
        counters = us.counter_update(
            self.table.name,
            ex.tenant,
            arn,
            running=running,
            before=None if creating else usage_before,
            after=plan.usage,
        )
        if counters is not None:
            plan.items.append(counters)
            plan.labels.append("running")
        if creating:
            plan.items.append(us.start_update(self.table.name, ex))
            plan.labels.append("starts")
        # The version's pin count (garbage collection's fence), decided like the counters.
        pin = vp.pin_update(
            self.table.name, ex, before=None if creating else usage_before, after=plan.usage
        )
        if pin is not None:
            plan.items.append(pin)
            plan.labels.append("pins")
        # The start queue's entry and backlog count (`start_queue`), decided the same way.
        queue = sq.queue_writes(
            self.table.name, ex, before=None if creating else usage_before, after=plan.usage
        )
        plan.items.extend(queue)
        plan.labels.extend(["queue"] * len(queue))
        callbacks = [cid for cid, _, _ in commit.new_callbacks]
        if commit.operations or callbacks:
            ops = self.codec.encode(arn, it.operations_json(commit.operations))
            self._put(plan, "batch", it.batch_item(ex, version, ops, callbacks), absent=True)
        if commit.events:
            events = self.codec.encode(arn, it.events_json(commit.events))
            self._put(plan, "events", it.events_item(ex, commit.events, events), absent=True)
        if commit.client_token is not None:
            token, response = commit.client_token
            encoded = self.codec.encode(arn, response.encode())
            self._put(plan, "token", it.token_item(ex, token, encoded))
        for timer in foreign:
            self._put(plan, "timer", it.standalone_timer_item(timer, ex))
        if commit.status_event is not None:
            # The outbox: the status change and its event apply together or not at all.
            plan.items.extend(status_event_items(self.table.name, commit.status_event))
            plan.labels.extend(["status-event", "status-outbox"])
        audit = audit_writes(self.table.name, commit.audit, self.audit_days)
        plan.items.extend(audit)
        plan.labels.extend(["audit"] * len(audit))
        room = TRANSACTION_MAX - len(plan.items)
        if room < 0:
            raise PayloadTooLarge(
                f"A commit of {arn} sets {len(foreign)} timers on other executions;"
                f" at most {TRANSACTION_MAX} items fit in one transaction."
            )
        for pk, sk, _ in doomed[:room]:
            plan.items.append({"Delete": {"TableName": self.table.name, "Key": it.key(pk, sk)}})
            plan.labels.append("timer")
        plan.after = doomed[room:]
        room = max(0, room - len(doomed))
        for i, (cid, op_id, heartbeat) in enumerate(commit.new_callbacks):
            if i < room:
                item = it.callback_item(ex, cid, op_id, heartbeat, confirmed=True)
                self._put(plan, "callback", item, absent=True)
            else:
                plan.before.append(it.callback_item(ex, cid, op_id, heartbeat, confirmed=False))
        if plan.before or plan.after:
            log.info(
                "commit of %s overflows one transaction: %d callbacks before, %d timer"
                " deletes after it",
                arn,
                len(plan.before),
                len(plan.after),
            )
        return plan

    def delete_record(self, ex: Execution, meta: Item, audit: AuditRecord | None = None) -> None:
        """Delete the META item `meta` of `ex` and its name guard in one transaction.

        Conditioned on the version read, so the counter is decremented only for the flag
        really deleted, never a second time for a commit that unflagged it meanwhile
        (that is ConcurrentModification: read again).
        """
        arn = ex.arn
        items: list[TransactWriteItemTypeDef] = [
            {
                "Delete": {
                    "TableName": self.table.name,
                    "Key": it.meta_key(arn),
                    "ConditionExpression": "#v = :v",
                    "ExpressionAttributeNames": {"#v": it.VERSION_SEQ},
                    "ExpressionAttributeValues": {":v": meta[it.VERSION_SEQ]},
                }
            },
            {
                "Delete": {
                    "TableName": self.table.name,
                    "Key": it.key(it.name_pk(ex.tenant, ex.function_name, ex.name), it.NAME_SK),
                }
            },
        ]
        counters = us.counter_update(
            self.table.name,
            ex.tenant,
            arn,
            running=-1 if it.was_counted(meta) else 0,
            before=us.state_in(meta),
            after=None,
        )
        if counters is not None:
            items.append(counters)
        items.extend(audit_writes(self.table.name, audit, self.audit_days))
        pin = vp.pin_update(self.table.name, ex, before=us.state_in(meta), after=None)
        items.extend([pin] if pin is not None else [])
        items.extend(sq.queue_writes(self.table.name, ex, before=us.state_in(meta), after=None))
        transact(
            self.table,
            items,
            f"delete execution {arn}",
            ["meta", "name", "running"],
            lambda _: ConcurrentModification(f"Execution {arn} changed concurrently."),
        )

    def _put(
        self, plan: CommitPlan, label: str, item: Item, *, absent: bool = False, version: int = 0
    ) -> None:
        put: TransactWriteItemTypeDef = {"Put": {"TableName": self.table.name, "Item": item}}
        if absent:
            put["Put"]["ConditionExpression"] = "attribute_not_exists(#pk)"
            put["Put"]["ExpressionAttributeNames"] = {"#pk": PARTITION_KEY}
        elif version:
            put["Put"]["ConditionExpression"] = "#v = :v"
            put["Put"]["ExpressionAttributeNames"] = {"#v": it.VERSION_SEQ}
            put["Put"]["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
        plan.items.append(put)
        plan.labels.append(label)

    def _outbox_timers(
        self, arn: str, keys: set[str], everything: bool
    ) -> list[tuple[str, str, int]]:
        """Timers other executions set on this one that the commit clears.

        Read only when a cleared timer is not among the execution's own: that is rare
        (a chained invoke's CHILD_DONE), so most commits make no extra read.
        """
        if not keys and not everything:
            return []
        pk = it.execution_pk(arn)
        found = []
        for item in self.table.query(
            f"read outbox timers of {arn}",
            key_condition="#pk = :pk AND begins_with(#sk, :t)",
            names={"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            values={":pk": {"S": pk}, ":t": {"S": it.TIMER_PREFIX}},
        ):
            sk = it.text(item, SORT_KEY)
            if everything or sk[len(it.TIMER_PREFIX) :] in keys:
                found.append((pk, sk, it.number(item, DUE_MS)))
        return found

    def apply(self, plan: CommitPlan, action: str, refused: Callable[[str], TreadleError]) -> None:
        if plan.before:
            self.table.batch_put(plan.before, f"{action}: callbacks")
        transact(self.table, plan.items, action, plan.labels, refused)
        for pk, sk, due in plan.after:
            try:
                self.table.client.delete_item(
                    TableName=self.table.name,
                    Key=it.key(pk, sk),
                    ConditionExpression="#d = :d",
                    ExpressionAttributeNames={"#d": DUE_MS},
                    ExpressionAttributeValues={":d": {"N": str(due)}},
                )
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    log.warning("%s: timer %s left for the sweep: %s", action, sk, exc)
