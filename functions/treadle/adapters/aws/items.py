"""Keys and item shapes of the execution store in the single table (see `tables`).

Pure functions: no client, no I/O. Bulky values arrive already encoded by the
`PayloadCodec` and leave as bytes for it to decode.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from treadle.adapters.aws import tables as t
from treadle.domain.concurrency import occupies_slot
from treadle.domain.models import Event, Execution, ExecutionStatus, Operation
from treadle.domain.ports import StoredOperation, Timer, TimerKind

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]

EXECUTION_PREFIX: Final = "X#"
META_SK: Final = "META"
NAME_SK: Final = "N"
CALLBACK_SK: Final = "C"
BATCH_PREFIX: Final = "B#"
EVENTS_PREFIX: Final = "E#"
TIMER_PREFIX: Final = "T#"
TOKEN_PREFIX: Final = "K#"
# Sorts after every digit and every character of a kind or operation id: an upper bound
# of a prefix in a BETWEEN key condition.
HIGH: Final = "~"

# Non-key attributes.
VERSION_SEQ: Final = "version_seq"
RECORD: Final = "record"
STATUS: Final = "status"
TIMERS: Final = "timers"
OPERATIONS: Final = "operations"
EVENTS: Final = "events"
EVENT_KEYS: Final = "event_keys"  # "<EventType>#<operation id>" of the events in the item
CALLBACKS: Final = "callbacks"
RESPONSE: Final = "response"
ARN: Final = "arn"
OP_ID: Final = "op_id"
HEARTBEAT_S: Final = "heartbeat_s"
# On a callback item written before its transaction: it counts only once the
# operation it names holds that callback id.
UNCONFIRMED: Final = "unconfirmed"
# On a META item: this execution is included in its tenant's running counter. Every
# transaction that writes or deletes a META item moves the counter by the change of this
# flag, so the counter is exactly the number of flagged items; an execution written
# before the counter existed is flagged (and counted) by its next commit.
COUNTED: Final = "running_counted"
# On a counter shard: its share of the tenant's running executions (RUNNING with an
# INVOKE timer: `domain/concurrency`), flagged COUNTED on their META item.
RUNNING_COUNT: Final = "running"


# -- keys ----------------------------------------------------------------------------


def execution_pk(arn: str) -> str:
    return f"{EXECUTION_PREFIX}{arn}"


def arn_of_pk(pk: str) -> str:
    return pk[2:]


def batch_sk(version: int) -> str:
    return f"{BATCH_PREFIX}{version:012d}"


def events_sk(last_event_id: int) -> str:
    return f"{EVENTS_PREFIX}{last_event_id:012d}"


def timer_sk(kind: TimerKind, op_id: str) -> str:
    return f"{TIMER_PREFIX}{timer_key(kind, op_id)}"


def token_sk(client_token: str) -> str:
    return f"{TOKEN_PREFIX}{client_token}"


def name_pk(tenant: str, function_name: str, name: str) -> str:
    return f"N#{tenant}#{function_name}#{name}"


def callback_pk(callback_id: str) -> str:
    return f"C#{callback_id}"


def running_pk(tenant: str) -> str:
    return f"{t.USAGE_PREFIX}{tenant}"


def running_key(tenant: str, arn: str) -> Item:
    """The counter shard of one execution: its increment and decrement hit the same one."""
    shard_ = zlib.crc32(arn.encode()) % t.RUNNING_SHARDS
    return key(running_pk(tenant), f"{t.RUNNING_SK_PREFIX}{shard_}")


def key(pk: str, sk: str) -> Item:
    return {t.PARTITION_KEY: {"S": pk}, t.SORT_KEY: {"S": sk}}


def meta_key(arn: str) -> Item:
    return key(execution_pk(arn), META_SK)


def function_key(tenant: str, function_name: str) -> str:
    return f"F#{tenant}#{function_name}"


def status_key(tenant: str, function_name: str, status: str) -> str:
    return f"{function_key(tenant, function_name)}#{status}"


def start_key(start_ms: int, exec_id: str) -> str:
    # Zero-padded so that string order is time order; the id breaks ties stably.
    return f"{start_ms:015d}#{exec_id}"


def shard(arn: str) -> str:
    return str(zlib.crc32(arn.encode()) % t.INDEX_SHARDS)


def expires_at(ex: Execution) -> int | None:
    """When TTL may reclaim the execution's items: after the engine has deleted them.

    None while QUEUED: a start may wait longer than any bound, and its execution timeout
    counts from its promotion. The promotion changes the status, so from then on
    `status_changed_ms` is at least the promotion time and the bound holds again for
    every item written; the items written while queued carry no TTL (the engine's
    delete still removes them)."""
    if ex.status is ExecutionStatus.QUEUED:
        return None
    clock_ms = max(ex.start_ms, ex.status_changed_ms)
    return clock_ms // 1000 + ex.execution_timeout_s + ex.retention_days * 86_400 + t.TTL_GRACE_S


# -- timers --------------------------------------------------------------------------


def timer_key(kind: TimerKind, op_id: str) -> str:
    return f"{kind.value}#{op_id}"


def timer_of(arn: str, timer_key_: str, due_ms: int) -> Timer:
    kind, op_id = timer_key_.split("#", 1)
    return Timer(arn, TimerKind(kind), op_id, due_ms)


def timers_of(item: Mapping[str, AttributeValueTypeDef]) -> dict[str, int]:
    stored = item.get(TIMERS, {}).get("M", {})
    return {k: int(v["N"]) for k, v in stored.items()}


# -- attributes ----------------------------------------------------------------------


def text(item: Mapping[str, AttributeValueTypeDef], name: str) -> str:
    return item[name]["S"]


def number(item: Mapping[str, AttributeValueTypeDef], name: str) -> int:
    return int(item[name]["N"])


def blob(item: Mapping[str, AttributeValueTypeDef], name: str) -> bytes:
    return bytes(item[name]["B"])


def common(ex: Execution) -> Item:
    at = expires_at(ex)
    return {} if at is None else {t.TTL_ATTRIBUTE: {"N": str(at)}}


# -- execution record ----------------------------------------------------------------


def record_json(ex: Execution, version: int) -> bytes:
    return ex.model_copy(update={"version_seq": version}).model_dump_json().encode()


def meta_item(ex: Execution, version: int, record: bytes, timers: Mapping[str, int]) -> Item:
    """The execution's META item: record, version, own timers and its index keys."""
    item: Item = {
        **meta_key(ex.arn),
        **common(ex),
        VERSION_SEQ: {"N": str(version)},
        RECORD: {"B": record},
        STATUS: {"S": ex.status.value},
        TIMERS: {"M": {k: {"N": str(v)} for k, v in timers.items()}},
        t.FUNCTION_KEY: {"S": function_key(ex.tenant, ex.function_name)},
        t.STATUS_KEY: {"S": status_key(ex.tenant, ex.function_name, ex.status.value)},
        t.START_KEY: {"S": start_key(ex.start_ms, ex.exec_id)},
        t.EXECUTION_NAME: {"S": ex.name},
        t.FUNCTION_VERSION: {"S": ex.version},
    }
    # Sparse indexes: an attribute that is absent keeps the item out of the index.
    if timers:
        item[t.DUE_SHARD] = {"S": shard(ex.arn)}
        item[t.DUE_MS] = {"N": str(min(timers.values()))}
    if ex.invocation_active:
        item[t.ACTIVE_SHARD] = {"S": shard(ex.arn)}
    if counted(ex, timers):
        item[COUNTED] = {"BOOL": True}
    if ex.code_key is not None:
        item[t.CODE_KEY] = {"S": ex.code_key}
    return item


def counted(ex: Execution, timers: Mapping[str, int]) -> bool:
    """Whether the running quota counts `ex` with its own `timers` (keyed by `timer_key`):
    RUNNING and holding or awaiting an invocation, as the embedded store."""
    kinds = (TimerKind(name.split("#", 1)[0]) for name in timers)
    return occupies_slot(ex.status, kinds)


def was_counted(meta: Mapping[str, AttributeValueTypeDef]) -> bool:
    return COUNTED in meta


def name_item(ex: Execution) -> Item:
    return {
        **key(name_pk(ex.tenant, ex.function_name, ex.name), NAME_SK),
        **common(ex),
        ARN: {"S": ex.arn},
    }


def decode_record(raw: bytes, version: int) -> Execution:
    ex = Execution.model_validate_json(raw)
    ex.version_seq = version  # the key attribute is authoritative
    return ex


# -- batch log -----------------------------------------------------------------------


def operations_json(operations: Iterable[StoredOperation]) -> bytes:
    rows = [
        [s.create_seq, s.change_seq, s.op.model_dump(mode="json", exclude_none=True)]
        for s in operations
    ]
    return json.dumps(rows, separators=(",", ":")).encode()


def decode_operations(raw: bytes) -> list[StoredOperation]:
    rows: list[list[Any]] = json.loads(raw)
    return [
        StoredOperation(op=Operation.model_validate(body), create_seq=c, change_seq=h)
        for c, h, body in rows
    ]


def batch_item(ex: Execution, version: int, operations: bytes, callbacks: list[str]) -> Item:
    item: Item = {
        **key(execution_pk(ex.arn), batch_sk(version)),
        **common(ex),
        OPERATIONS: {"B": operations},
    }
    if callbacks:  # delete() finds the execution's callback items here
        item[CALLBACKS] = {"SS": sorted(set(callbacks))}
    return item


def events_json(events: Iterable[Event]) -> bytes:
    rows = [e.model_dump(mode="json", exclude_none=True) for e in events]
    return json.dumps(rows, separators=(",", ":")).encode()


def decode_events(raw: bytes) -> list[Event]:
    return [Event.model_validate(row) for row in json.loads(raw)]


def events_item(ex: Execution, events: list[Event], encoded: bytes) -> Item:
    item: Item = {
        **key(execution_pk(ex.arn), events_sk(max(e.EventId for e in events))),
        **common(ex),
        EVENTS: {"B": encoded},
    }
    keys = {f"{e.EventType}#{e.Id}" for e in events if e.Id}
    if keys:
        item[EVENT_KEYS] = {"SS": sorted(keys)}
    return item


def standalone_timer_item(timer: Timer, ttl_from: Execution) -> Item:
    """A timer on another execution (an outbox entry), indexed like a META item."""
    return {
        **key(execution_pk(timer.arn), timer_sk(timer.kind, timer.op_id)),
        **common(ttl_from),
        t.DUE_SHARD: {"S": shard(timer.arn)},
        t.DUE_MS: {"N": str(timer.due_ms)},
    }


def token_item(ex: Execution, client_token: str, response: bytes) -> Item:
    return {
        **key(execution_pk(ex.arn), token_sk(client_token)),
        **common(ex),
        RESPONSE: {"B": response},
    }


def callback_item(
    ex: Execution, callback_id: str, op_id: str, heartbeat_s: int, *, confirmed: bool
) -> Item:
    item: Item = {
        **key(callback_pk(callback_id), CALLBACK_SK),
        **common(ex),
        ARN: {"S": ex.arn},
        OP_ID: {"S": op_id},
        HEARTBEAT_S: {"N": str(heartbeat_s)},
    }
    if not confirmed:
        item[UNCONFIRMED] = {"BOOL": True}
    return item
