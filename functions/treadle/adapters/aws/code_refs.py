"""DynamoDB side of `domain/code_refs.py`: a count per code package in the single table.

| item | pk | sk | attributes |
|---|---|---|---|
| a code package's references | `CR` | `<sha256 hex>` | `refs` (N), `size` (N), `free_since` (N) |
| the backfill's progress | `CRS` | `STATE` | `done`, `passes`, `first_done_ms`, `cursor` |

Each function item ($LATEST, a published version) that is counted carries `cref`; the
transaction that writes it adds one to its package's count, the one that deletes it
(or moves $LATEST to other code) takes one off, and only for an item that carries
`cref`: a count can be too high (its package then stays: nothing is lost) but never
too low. Items written before counts existed are counted once by `backfill`, each in a
transaction with its own count conditioned on its still lacking `cref`; until the
backfill has gone through the whole table twice (`backfill` says why) no package is
reported unreferenced.

An execution keeps the code it started on until it is deleted (`tables.GSI_BY_CODE`
finds them): a package one of them runs is never reported unreferenced nor released.
The index is eventually consistent, which the collector's grace period covers: an
execution can only start on a package some version named when the start read it.
Executions written before the index existed get their `code_key` from the backfill.

One partition for every package: they are written only when versions are (deploys,
not executions), and the collector reads them with one paged Query.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.errors import cancellation_codes, error_code, translated
from treadle.adapters.aws.items import (
    EXECUTION_PREFIX,
    META_SK,
    RECORD,
    VERSION_SEQ,
    decode_record,
    key,
)
from treadle.adapters.aws.optimistic import ATTEMPTS, backoff, conditional
from treadle.adapters.aws.payloads import PayloadCodec
from treadle.domain.code_refs import CodeRef
from treadle.domain.errors import ConcurrentModification
from treadle.domain.ports import FunctionVersion

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

PK: Final = "CR"
STATE_PK: Final = "CRS"
STATE_SK: Final = "STATE"
COUNTED: Final = "cref"  # on a function item: its reference is in the count
REFS: Final = "refs"
SIZE: Final = "size"
FREE: Final = "free_since"
# Package counts one delete moves inside its own transaction; a function with more
# distinct packages has the rest moved just after (`FunctionDeletes`).
IN_TRANSACTION_MAX: Final = 40
_SCAN_PAGE = 500
# Pages one call scans at most: a sweep Lambda's run is bounded; the next run resumes.
_SCAN_PAGES_PER_CALL = 20
# The backfill's second pass waits this long after the first: longer than any request
# of a process of the previous Treadle can still be running (`backfill`).
SECOND_PASS_AFTER_MS: Final = 3_600_000


def counted(item: Mapping[str, Any]) -> bool:
    return COUNTED in item


def ref_updates(
    table: str, added: Iterable[FunctionVersion] = (), removed: Iterable[FunctionVersion] = ()
) -> list[TransactWriteItemTypeDef]:
    """The items moving the counts: one per package whose count changes (a transaction
    may not touch one item twice, so what is added and removed is netted first)."""
    delta: Counter[str] = Counter()
    sizes: dict[str, int] = {}
    for fn in added:
        delta[fn.code_key] += 1
        sizes[fn.code_key] = fn.code_size
    for fn in removed:
        delta[fn.code_key] -= 1
    out: list[TransactWriteItemTypeDef] = []
    for code_key, n in sorted(delta.items()):
        if n == 0:
            continue
        values: dict[str, AttributeValueTypeDef] = {":n": {"N": str(n)}}
        if n > 0:  # referenced again: no longer free
            expression = "SET #size = :size ADD #refs :n REMOVE #free"
            values[":size"] = {"N": str(sizes[code_key])}
            names = {"#refs": REFS, "#size": SIZE, "#free": FREE}
        else:
            expression, names = "ADD #refs :n", {"#refs": REFS}
        out.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": key(PK, code_key),
                    "UpdateExpression": expression,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        )
    return out


class DynamoCodeRefs:
    """The collector's reads and conditional writes of the counts (`CodeRefs`)."""

    def __init__(
        self,
        table: Table,
        codec: PayloadCodec,
        *,
        now_ms: Callable[[], int],
        second_pass_after_ms: int = SECOND_PASS_AFTER_MS,
    ) -> None:
        self._table = table
        self._codec = codec  # reads execution records (the backfill's)
        self._now_ms = now_ms
        self._second_after = second_pass_after_ms

    def unreferenced_code(self, after: str | None, limit: int) -> list[CodeRef]:
        if not self._backfilled():
            return []
        values: dict[str, AttributeValueTypeDef] = {":pk": {"S": PK}, ":zero": {"N": "0"}}
        condition = "pk = :pk"
        if after:
            condition += " AND sk > :after"
            values[":after"] = {"S": after}
        out: list[CodeRef] = []
        for item in self._table.query(
            "list unreferenced code",
            key_condition=condition,
            values=values,
            names={"#refs": REFS},
            filter_expression="#refs <= :zero",
        ):
            if self._in_use(item[t.SORT_KEY]["S"]):
                continue
            free = item.get(FREE, {}).get("N")
            out.append(
                CodeRef(
                    item[t.SORT_KEY]["S"],
                    int(item.get(SIZE, {}).get("N", "0")),
                    None if free is None else int(free),
                )
            )
            if len(out) >= limit:
                break
        return out

    def mark_code_free(self, code_key: str, now_ms: int) -> None:
        if self._in_use(code_key):
            return
        with conditional(f"mark code {code_key} free", None):
            self._table.client.update_item(
                TableName=self._table.name,
                Key=key(PK, code_key),
                UpdateExpression="SET #free = :now",
                ConditionExpression="#refs <= :zero AND attribute_not_exists(#free)",
                ExpressionAttributeNames={"#free": FREE, "#refs": REFS},
                ExpressionAttributeValues={":now": {"N": str(now_ms)}, ":zero": {"N": "0"}},
            )

    def _in_use(self, code_key: str) -> bool:
        """Whether an execution (not yet deleted) runs this package."""
        found = self._table.query(
            "find executions running a package",
            key_condition="#code = :code",
            names={"#code": t.CODE_KEY},
            values={":code": {"S": code_key}},
            index=t.GSI_BY_CODE,
            page_size=1,
        )
        return next(found, None) is not None

    def release_code(self, code_key: str, cutoff_ms: int) -> bool:
        if self._in_use(code_key):
            return False
        with translated(f"release code {code_key}"):
            try:
                self._table.client.delete_item(
                    TableName=self._table.name,
                    Key=key(PK, code_key),
                    ConditionExpression="#refs <= :zero AND #free <= :cutoff",
                    ExpressionAttributeNames={"#free": FREE, "#refs": REFS},
                    ExpressionAttributeValues={
                        ":cutoff": {"N": str(cutoff_ms)},
                        ":zero": {"N": "0"},
                    },
                )
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    # -- the backfill of items written before counts existed --------------------------

    def _backfilled(self) -> bool:
        state = self._table.get(key(STATE_PK, STATE_SK), "read code count state") or {}
        if state.get("done", {}).get("BOOL"):
            return True
        return self.backfill(state)

    def backfill(self, state: Item | None = None) -> bool:
        """Count every function item that lacks `cref` and index every execution that
        lacks `code_key`, resuming where a previous run stopped (the Scan's position is
        saved after each page); True once complete.

        Complete means two whole passes, the second begun `second_pass_after_ms` after
        the first ended: a process of the previous Treadle still running when the first
        pass ended (a deploy's last in-flight requests) may write uncounted items after
        it, which would make a count too low; the second pass counts those.
        """
        if state is None:
            state = self._table.get(key(STATE_PK, STATE_SK), "read code count state") or {}
        cursor = state.get("cursor", {}).get("S")
        passes = int(state.get("passes", {}).get("N", "0"))
        first_done = int(state.get("first_done_ms", {}).get("N", "0"))
        if passes == 1 and not cursor and self._now_ms() < first_done + self._second_after:
            return False
        request: dict[str, Any] = {
            "TableName": self._table.name,
            "FilterExpression": "(begins_with(pk, :f) AND begins_with(sk, :v)"
            " AND attribute_not_exists(#cref))"
            " OR (begins_with(pk, :x) AND sk = :meta AND attribute_not_exists(#code))",
            "ExpressionAttributeNames": {"#cref": COUNTED, "#code": t.CODE_KEY},
            "ExpressionAttributeValues": {
                ":f": {"S": t.FUNCTION_PREFIX},
                ":v": {"S": t.FUNCTION_VERSION_SK_PREFIX},
                ":x": {"S": EXECUTION_PREFIX},
                ":meta": {"S": META_SK},
            },
            "Limit": _SCAN_PAGE,
        }
        for _ in range(_SCAN_PAGES_PER_CALL):
            if cursor:
                request["ExclusiveStartKey"] = json.loads(cursor)
            else:
                request.pop("ExclusiveStartKey", None)
            with translated("scan function items to count their code"):
                page = self._table.client.scan(**request)
            for item in page["Items"]:
                if item[t.SORT_KEY]["S"] == META_SK:
                    self._index_execution(item)
                else:
                    self._count_one(item)
            last = page.get("LastEvaluatedKey")
            cursor = json.dumps(last) if last else None
            if cursor is None:
                passes += 1
                if passes == 1:
                    first_done = self._now_ms()
            done = passes >= 2
            saved: Item = {
                **key(STATE_PK, STATE_SK),
                "done": {"BOOL": done},
                "passes": {"N": str(passes)},
                "first_done_ms": {"N": str(first_done)},
            }
            if cursor:
                saved["cursor"] = {"S": cursor}
            with translated("save code count state"):
                self._table.client.put_item(TableName=self._table.name, Item=saved)
            if done:
                log.info("code references of existing items counted (two passes)")
                return True
            if cursor is None and self._now_ms() < first_done + self._second_after:
                return False
        return False  # the next call goes on from the saved cursor

    def _index_execution(self, item: Item) -> None:
        """Give an execution written before the index its `code_key`. Every writer of
        the item now writes it whole with the attribute, so none can take it away."""
        raw = self._codec.decode(item[RECORD]["B"])
        code = decode_record(raw, int(item[VERSION_SEQ]["N"])).code_key
        if code is None:
            return
        with conditional("index an execution by its code", None):
            self._table.client.update_item(
                TableName=self._table.name,
                Key=key(item[t.PARTITION_KEY]["S"], META_SK),
                UpdateExpression="SET #code = :code",
                ConditionExpression="attribute_exists(pk)",  # not deleted meanwhile
                ExpressionAttributeNames={"#code": t.CODE_KEY},
                ExpressionAttributeValues={":code": {"S": code}},
            )

    def _count_one(self, item: Item) -> None:
        fn = FunctionVersion.model_validate_json(item["body"]["S"])
        names = {"#cref": COUNTED, "#body": "body"}
        values: dict[str, AttributeValueTypeDef] = {":true": {"BOOL": True}, ":body": item["body"]}
        mark: TransactWriteItemTypeDef = {
            "Update": {
                "TableName": self._table.name,
                "Key": key(item[t.PARTITION_KEY]["S"], item[t.SORT_KEY]["S"]),
                "UpdateExpression": "SET #cref = :true",
                # Still there, unchanged ($LATEST's body moves) and not yet counted.
                "ConditionExpression": "attribute_not_exists(#cref) AND #body = :body",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }
        for attempt in range(ATTEMPTS):
            try:
                self._table.transact([mark, *ref_updates(self._table.name, added=[fn])])
                return
            except ClientError as exc:
                reasons = cancellation_codes(exc)
                if error_code(exc) != "TransactionCanceledException":
                    raise
                if reasons and reasons[0] == "ConditionalCheckFailed":
                    return  # changed or deleted meanwhile: its writer counted it (or it is gone)
            # Conflicted with another write of the count: never skipped (a count too
            # low would let a package in use go), tried again.
            backoff(attempt)
        raise ConcurrentModification("code count backfill kept conflicting; the next run resumes.")
