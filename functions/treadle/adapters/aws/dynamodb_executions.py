"""DynamoDB adapter of the ExecutionStore port: one table, one transaction per commit.

Item layout and indexes are described in `treadle.adapters.aws.tables`. The model is
the batch log of `Commit`'s docstring:

- the `META` item holds the execution record, its `version_seq` and its own timers (a
  map, whose earliest entry keys the sparse due-timers index);
- each commit appends one `B#<version>` item (its changed operations, compressed) and
  one `E#<last event id>` item (its history events), never one item per operation or
  event, so a 250-update checkpoint is still a handful of items;
- operations are folded from the batch log (each `StoredOperation` is the whole
  current state, so the last write wins) and cached per execution; a load re-reads the
  `META` item and folds only the batches newer than its cached version.

A commit is ONE TransactWriteItems (built in `commits`): the `META` put conditioned on
the `version_seq` the commit was computed from, the batch and events items, the
ClientToken response, timers set on other executions (outbox items, e.g. a child's
CHILD_DONE on its parent), deletes of such timers it clears, one item per new callback
id, and an update of the tenant's running counter when the execution enters or leaves
RUNNING (see `commits`). Every commit bumps `version_seq`, so the condition fences stale
token generations as well as any other concurrent writer: of two writers that loaded the
same version, exactly one applies. Bulky values are uploaded to S3 before the transaction
(content-addressed, so an upload whose transaction is cancelled is only garbage).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from treadle.adapters.aws import items as it
from treadle.adapters.aws import listing
from treadle.adapters.aws import usage_items as us
from treadle.adapters.aws.commits import CommitWriter
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.optimistic import retry_conflicts
from treadle.adapters.aws.payloads import PayloadCodec
from treadle.adapters.aws.tables import PARTITION_KEY, SORT_KEY
from treadle.adapters.snapshot_cache import SnapshotCache
from treadle.domain.audit import DEFAULT_RETENTION_DAYS, AuditRecord
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    NotFound,
    PayloadTooLarge,
    TreadleError,
)
from treadle.domain.models import Event, Execution
from treadle.domain.ports import Commit, ExecutionQuery, Snapshot, StoredOperation, Timer
from treadle.domain.usage import ExecutionCounts

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
    from mypy_boto3_s3 import S3Client

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)


@dataclass
class _Entry(Snapshot):
    """What the store knows of one execution at one version (`execution.version_seq`)."""

    timers: dict[str, int]
    counted: bool  # the META item's COUNTED flag (see `items.COUNTED`)
    usage: us.State | None  # the META item's usage state (see `usage_items`)

    @property
    def version(self) -> int:
        return self.execution.version_seq


class DynamoExecutionStore:
    """Executions in one DynamoDB table; big values in S3 when a bucket is given."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        s3_client: S3Client | None = None,
        bucket: str | None = None,
        offload_threshold_bytes: int = 200_000,
        cache_size: int = 1024,
        audit_retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self._table = Table(client, table_name)
        self._codec = PayloadCodec(s3_client, bucket, offload_threshold_bytes)
        self._writer = CommitWriter(self._table, self._codec, audit_retention_days)
        self._cache: SnapshotCache[_Entry] = SnapshotCache(cache_size)

    # -- writes --------------------------------------------------------------------

    def create(self, commit: Commit) -> None:
        ex = commit.execution

        def refused(label: str) -> TreadleError:
            if label in ("meta", "name"):
                return AlreadyExists(f"Execution {ex.name} already exists.")
            return ConcurrentModification(f"Execution {ex.arn} changed concurrently.")

        plan = self._writer.plan(
            commit, version=1, timers_before={}, counted_before=False, creating=True
        )
        # A taken name is AlreadyExists; a conflict is another transaction holding the
        # tenant's counter shard, and nothing applied, so the same items may go again.
        retry_conflicts(lambda: self._writer.apply(plan, f"create execution {ex.arn}", refused))
        ex.version_seq = 1
        ops = {s.op.Id: s for s in commit.operations}
        self._cache.remember(
            _Entry(ex.model_copy(deep=True), ops, plan.timers, plan.counted, plan.usage)
        )

    def create_batch(self, commits: Sequence[Commit]) -> list[bool]:
        """One transaction per execution (each takes ~6 of a transaction's 100 items:
        META, name guard, operations, events, counter shard, start bucket), one after
        the other.
        Applied in part if it fails midway; idempotent names make the retry complete it.
        (Sequential: concurrent transactions were not reliable under moto, the only
        DynamoDB this was tested on.)"""

        def one(commit: Commit) -> bool:
            try:
                self.create(commit)
            except AlreadyExists:
                return False
            return True

        return [one(c) for c in commits]

    def create_linked(self, commit: Commit, source: Commit) -> None:
        """Both commits' items in ONE transaction (a creation takes ~5 items, the
        source's update ~3): the source's META fenced on its version, the new META and
        name guard on their absence."""
        ex, src = commit.execution, source.execution
        expected = src.version_seq

        def refused(label: str) -> TreadleError:
            if label in ("meta", "name"):
                return AlreadyExists(f"Execution {ex.name} already exists.")
            return ConcurrentModification(f"Execution {src.arn} changed concurrently.")

        try:
            timers, counted, usage = self._state_at(src.arn, expected)
            linked = self._writer.plan(
                source,
                version=expected + 1,
                timers_before=timers,
                counted_before=counted,
                creating=False,
                usage_before=usage,
            )
            plan = self._writer.plan(
                commit, version=1, timers_before={}, counted_before=False, creating=True
            )
            if linked.before or linked.after or plan.before or plan.after:
                raise PayloadTooLarge(f"A redrive of {src.arn} does not fit one transaction.")
            plan.items = linked.items + plan.items
            plan.labels = ["source-" + label for label in linked.labels] + plan.labels
            self._writer.apply(plan, f"create execution {ex.arn} from {src.arn}", refused)
        except (ConcurrentModification, AlreadyExists):
            self._cache.forget(src.arn)
            raise
        src.version_seq = expected + 1
        self._cache.advance(
            source,
            lambda ops: _Entry(
                src.model_copy(deep=True), ops, linked.timers, linked.counted, linked.usage
            ),
        )
        ex.version_seq = 1
        ops = {s.op.Id: s for s in commit.operations}
        self._cache.remember(
            _Entry(ex.model_copy(deep=True), ops, plan.timers, plan.counted, plan.usage)
        )

    def commit(self, commit: Commit) -> None:
        ex = commit.execution
        expected = ex.version_seq

        def refused(label: str) -> TreadleError:
            return ConcurrentModification(f"Execution {ex.arn} changed concurrently.")

        try:
            timers, counted, usage = self._state_at(ex.arn, expected)
            plan = self._writer.plan(
                commit,
                version=expected + 1,
                timers_before=timers,
                counted_before=counted,
                creating=False,
                usage_before=usage,
            )
            self._writer.apply(plan, f"commit execution {ex.arn}", refused)
        except ConcurrentModification:
            # What this writer saw is stale: the next load must come from the table.
            self._cache.forget(ex.arn)
            raise
        ex.version_seq = expected + 1
        self._cache.advance(
            commit,
            lambda ops: _Entry(
                ex.model_copy(deep=True), ops, plan.timers, plan.counted, plan.usage
            ),
        )

    def _state_at(self, arn: str, version: int) -> tuple[dict[str, int], bool, us.State | None]:
        """Own timers, COUNTED flag and usage state at `version`;
        ConcurrentModification if it moved."""
        cached = self._cache.get(arn)
        if cached is not None and cached.version == version:
            return cached.timers, cached.counted, cached.usage
        item = self._table.get(it.meta_key(arn), f"read execution {arn}")
        if item is None or it.number(item, it.VERSION_SEQ) != version:
            raise ConcurrentModification(f"Execution {arn} changed concurrently.")
        return it.timers_of(item), it.was_counted(item), us.state_in(item)

    def delete(self, arn: str, *, audit: AuditRecord | None = None) -> None:
        """Remove the execution with its name first, then everything that hangs off it.

        Once the META item is gone no commit can land (its condition needs the item),
        so listing the children afterwards finds all of them. An interruption after the
        first step leaves unreachable items, which TTL reclaims.
        """
        self._cache.forget(arn)
        pk = it.execution_pk(arn)

        def remove_record() -> None:
            # Read on every try: a commit landing meanwhile may have changed the flag.
            meta = self._table.get(it.meta_key(arn), f"read execution {arn}")
            if meta is not None:
                self._writer.delete_record(self._decode(meta), meta, audit)

        retry_conflicts(remove_record)
        children: list[tuple[str, str]] = []
        for item in self._table.query(
            f"list items of {arn}",
            key_condition="#pk = :pk",
            names={"#pk": PARTITION_KEY, "#sk": SORT_KEY, "#cb": it.CALLBACKS},
            values={":pk": {"S": pk}},
            projection="#pk, #sk, #cb",
        ):
            children.append((pk, it.text(item, SORT_KEY)))
            # Callback items live in their own partitions; the batch log names them.
            callbacks = item.get(it.CALLBACKS, {}).get("SS", [])
            children.extend((it.callback_pk(c), it.CALLBACK_SK) for c in callbacks)
        self._table.batch_delete(children, f"delete items of {arn}")
        self._codec.delete_scope(arn)
        log.debug("deleted execution %s and %d items about it", arn, len(children))
        self._cache.forget(arn)

    # -- reads ---------------------------------------------------------------------

    def _meta(self, arn: str) -> Item:
        item = self._table.get(it.meta_key(arn), f"read execution {arn}")
        if item is None:
            raise NotFound(f"Durable execution {arn} not found.")
        return item

    def _decode(self, meta: Item) -> Execution:
        arn = it.arn_of_pk(it.text(meta, PARTITION_KEY))
        version = it.number(meta, it.VERSION_SEQ)
        cached = self._cache.get(arn)
        if cached is not None and cached.version == version:
            return cached.execution.model_copy(deep=True)
        return it.decode_record(self._codec.decode(it.blob(meta, it.RECORD)), version)

    def find_by_name(self, tenant: str, function_name: str, name: str) -> Execution | None:
        guard = self._table.get(
            it.key(it.name_pk(tenant, function_name, name), it.NAME_SK),
            f"find execution {name}",
        )
        if guard is None:
            return None
        try:
            return self.get(it.text(guard, it.ARN))
        except NotFound:  # deleted between the two reads
            return None

    def get(self, arn: str) -> Execution:
        return self._decode(self._meta(arn))

    def load(self, arn: str) -> Snapshot:
        meta = self._meta(arn)
        version = it.number(meta, it.VERSION_SEQ)
        entry = self._cache.get(arn)
        if entry is None or entry.version != version:
            base = entry if entry is not None and entry.version < version else None
            ops = dict(base.operations) if base is not None else {}
            log.debug(
                "folding the batch log of %s from version %d to %d",
                arn,
                base.version if base else 0,
                version,
            )
            for stored in self._batches(arn, after=base.version if base else 0, upto=version):
                ops[stored.op.Id] = stored
            entry = _Entry(
                self._decode(meta),
                ops,
                it.timers_of(meta),
                it.was_counted(meta),
                us.state_in(meta),
            )
            self._cache.remember(entry)
        return Snapshot(
            execution=entry.execution.model_copy(deep=True), operations=dict(entry.operations)
        )

    def _batches(self, arn: str, *, after: int, upto: int) -> Iterator[StoredOperation]:
        """Operations of the commits after `after` up to `upto`, in commit order.

        Bounded by `upto` (the version of the META item just read) so that a commit
        landing meanwhile does not mix into a snapshot of an older version.
        """
        if after >= upto:
            return
        for item in self._table.query(
            f"read batch log of {arn}",
            key_condition="#pk = :pk AND #sk BETWEEN :lo AND :hi",
            names={"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            values={
                ":pk": {"S": it.execution_pk(arn)},
                ":lo": {"S": it.batch_sk(after + 1)},
                ":hi": {"S": it.batch_sk(upto)},
            },
        ):
            yield from it.decode_operations(self._codec.decode(it.blob(item, it.OPERATIONS)))

    def _event_items(
        self, arn: str, lo: str, hi: str, *, forward: bool, page_size: int | None = None
    ) -> Iterator[list[Event]]:
        for item in self._table.query(
            f"read history of {arn}",
            key_condition="#pk = :pk AND #sk BETWEEN :lo AND :hi",
            names={"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            values={":pk": {"S": it.execution_pk(arn)}, ":lo": {"S": lo}, ":hi": {"S": hi}},
            forward=forward,
            page_size=page_size,
        ):
            yield it.decode_events(self._codec.decode(it.blob(item, it.EVENTS)))

    def events(self, arn: str, *, after_id: int, limit: int, reverse: bool = False) -> list[Event]:
        if limit <= 0:
            return []
        out: list[Event] = []
        top = it.EVENTS_PREFIX + it.HIGH
        if not reverse:
            # An item is keyed by its last event id: those after `after_id` hold the page.
            for batch in self._event_items(
                arn, it.events_sk(after_id + 1), top, forward=True, page_size=limit
            ):
                out.extend(e for e in batch if e.EventId > after_id)
                if len(out) >= limit:
                    break
            return out[:limit]
        hi = top
        if after_id > 0:
            # The item holding `after_id - 1` may also hold later events: filter it.
            for batch in self._event_items(
                arn, it.events_sk(after_id), top, forward=True, page_size=1
            ):
                out.extend(e for e in reversed(batch) if e.EventId < after_id)
                break
            hi = it.events_sk(after_id - 1)
        if len(out) < limit:
            for batch in self._event_items(
                arn, it.EVENTS_PREFIX, hi, forward=False, page_size=limit
            ):
                out.extend(reversed(batch))
                if len(out) >= limit:
                    break
        return out[:limit]

    def operations_page(self, arn: str, *, after_seq: int, limit: int) -> list[StoredOperation]:
        try:
            ops = self.load(arn).operations.values()
        except NotFound:
            return []
        page = sorted((s for s in ops if s.create_seq > after_seq), key=lambda s: s.create_seq)
        return page[: max(limit, 0)]

    def find_event(self, arn: str, op_id: str, event_type: str) -> Event | None:
        wanted = f"{event_type}#{op_id}"
        for item in self._table.query(
            f"find {event_type} of {op_id}",
            key_condition="#pk = :pk AND begins_with(#sk, :e)",
            names={"#pk": PARTITION_KEY, "#sk": SORT_KEY, "#k": it.EVENT_KEYS},
            values={
                ":pk": {"S": it.execution_pk(arn)},
                ":e": {"S": it.EVENTS_PREFIX},
                ":k": {"S": wanted},
            },
            filter_expression="contains(#k, :k)",
        ):
            for event in it.decode_events(self._codec.decode(it.blob(item, it.EVENTS))):
                if event.EventType == event_type and event.Id == op_id:
                    return event
        return None

    def callback_owner(self, callback_id: str) -> tuple[str, str, int] | None:
        item = self._table.get(it.key(it.callback_pk(callback_id), it.CALLBACK_SK), "find callback")
        if item is None:
            return None
        arn, op_id = it.text(item, it.ARN), it.text(item, it.OP_ID)
        if it.UNCONFIRMED in item:
            # Written before its transaction: real only if that transaction applied.
            try:
                stored = self.load(arn).operations.get(op_id)
            except NotFound:
                return None
            details = stored.op.CallbackDetails if stored is not None else None
            if details is None or details.CallbackId != callback_id:
                return None
        return arn, op_id, it.number(item, it.HEARTBEAT_S)

    def client_token_response(self, arn: str, client_token: str) -> str | None:
        item = self._table.get(
            it.key(it.execution_pk(arn), it.token_sk(client_token)), "read client token"
        )
        if item is None:
            return None
        return self._codec.decode(it.blob(item, it.RESPONSE)).decode()

    def count_running(self, tenant: str) -> int:
        """The tenant's executions holding or awaiting an invocation (`domain/concurrency`):
        the sum of its counter shards."""
        return listing.count_running(self._table, tenant)

    def usage(self, tenant: str, now_ms: int) -> ExecutionCounts:
        """The tenant's counters: its 8 counter shards and two minutes' start buckets."""
        return us.read_counts(self._table, tenant, now_ms)

    def due_timers(self, now_ms: int, limit: int) -> list[Timer]:
        return listing.due_timers(self._table, now_ms, limit)

    def next_due_ms(self) -> int | None:
        return listing.next_due_ms(self._table)

    def active_invocations(self) -> list[str]:
        return listing.active_invocations(self._table)

    def list_executions(
        self, tenant: str, function_name: str, query: ExecutionQuery
    ) -> tuple[list[Execution], str | None]:
        return listing.list_executions(self._table, tenant, function_name, query, self._records)

    def _records(self, arns: list[str]) -> dict[str, Execution]:
        keys = [(it.execution_pk(arn), it.META_SK) for arn in arns]
        found = self._table.batch_get(keys, "read executions")
        return {it.arn_of_pk(pk): self._decode(item) for (pk, _), item in found.items()}
