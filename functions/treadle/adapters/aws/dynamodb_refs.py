"""DynamoDB adapter of the artifacts' `RefStore`, in the single table (see `tables`).

Items of one repository share the partition `R#<tenant>#<repo>`:

- `REPO`: the repository exists. `seq` counts the compare-and-swaps applied to it,
  `deleting` fences a deletion too big for one transaction.
- `REF#<sha256(ref name)>`: one ref, its raw name in `ref` and its value in `value`
  (both binary: ref names and values are opaque bytes to the port). Hashing the name
  keeps the sort key short and valid whatever bytes the name holds.

`RL#<tenant>` / `<repo>` lists a tenant's repositories (a Query of one partition, in
name order), written and removed in the same transactions as the `REPO` item.

A compare-and-swap is ONE TransactWriteItems: an update of `REPO` (condition: exists,
not fenced; it bumps `seq`) and one write per ref conditioned on its expected value
(`attribute_not_exists` for ZERO_SHA; a delete when the new value is ZERO_SHA), so at
most 99 refs per batch. When DynamoDB cancels it, the current values are read back to
name the first mismatching ref, as the SQLite twin does; if none mismatches any more
(another writer moved a ref away and back), the swap is simply tried again.

`seq` is what makes the multi-item reads safe: `get_refs` reads `REPO`, queries the
refs, and reads `REPO` again; equal `seq` means no swap landed in between, so the refs
are one snapshot. A delete is conditioned on the `seq` it read the refs at, so a swap
racing with it cannot leave an orphaned ref behind.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Final, cast

from botocore.exceptions import ClientError

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.dynamodb_audit import audit_writes
from treadle.adapters.aws.errors import translated
from treadle.adapters.aws.items import key
from treadle.adapters.aws.optimistic import (
    ATTEMPTS,
    DELETING,
    LIVE,
    TRANSACTION_MAX,
    Condition,
    FencedRecord,
    backoff,
    raise_unless_lost_race,
    retry_conflicts,
)
from treadle.artifacts.ports import (
    RefConflict,
    RefUpdate,
    RepoAlreadyExists,
    RepoNotFound,
    RepoPage,
    check_initial_refs,
    check_updates,
    is_zero,
)
from treadle.domain.audit import DEFAULT_RETENTION_DAYS, AuditRecord
from treadle.domain.errors import ConcurrentModification, InvalidParameter, PayloadTooLarge
from treadle.failpoints import Kind, boundary

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        ConditionCheckTypeDef,
        DeleteTypeDef,
        PutTypeDef,
        TransactWriteItemTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

SEQ: Final = "seq"
CREATED_MS: Final = "created_ms"
REF: Final = "ref"
VALUE: Final = "value"
# A tenant's repository counter (its usage): `UR#<tenant>` / `<shard>`, attribute `n`.
REPO_COUNT_PREFIX: Final = "UR#"
REPO_COUNT: Final = "n"
REPO_COUNT_SHARDS: Final = 4
# A tenant's repository bytes: `URB#<tenant>` / `<shard>`, attribute `n` (coarse: moved
# after a pack is stored or removed, not with it; S3 and the table share no transaction).
REPO_BYTES_PREFIX: Final = "URB#"

# The REPO update is one of the transaction's items.
MAX_REFS_PER_SWAP: Final = TRANSACTION_MAX - 1


def repo_pk(tenant: str, repo: str) -> str:
    return f"{t.REPO_PREFIX}{tenant}#{repo}"


def ref_sk(ref: bytes) -> str:
    return f"{t.REF_SK_PREFIX}{hashlib.sha256(ref).hexdigest()}"


class DynamoRefStore:
    """Repositories and refs of every tenant in one DynamoDB table."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        audit_retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self._client = client
        self._table = Table(client, table_name)
        self._name = table_name
        self._audit_days = audit_retention_days

    # -- repositories ----------------------------------------------------------------

    def _repo_item(self, tenant: str, repo: str) -> Item | None:
        """The REPO item of a live repository (None if absent or being deleted)."""
        item = self._table.get(key(repo_pk(tenant, repo), t.REPO_SK), "read repository")
        return None if item is None or DELETING in item else item

    def _record(self, tenant: str, repo: str) -> FencedRecord:
        """A repository as a fenced record: REPO heads its refs."""
        pk = repo_pk(tenant, repo)
        return FencedRecord(
            self._table,
            pk,
            t.REPO_SK,
            listing=key(f"{t.REPO_LIST_PREFIX}{tenant}", repo),
            children=lambda: self._ref_keys(pk),
        )

    def create_repo(
        self, tenant: str, repo: str, refs: Mapping[bytes, bytes] | None = None
    ) -> None:
        check_initial_refs(refs or {})
        record = self._record(tenant, repo)
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._name,
                    "Item": {
                        **key(record.pk, t.REPO_SK),
                        SEQ: {"N": "0"},
                        CREATED_MS: {"N": str(int(time.time() * 1000))},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Put": {"TableName": self._name, "Item": record.listing}},
        ]
        for ref, value in (refs or {}).items():
            item: Item = {**key(record.pk, ref_sk(ref)), REF: {"B": ref}, VALUE: {"B": value}}
            items.append({"Put": {"TableName": self._name, "Item": item}})
        items.append(self._count(tenant, repo, 1))
        # A conflict on the counter item cancelled everything: the same items may go again.
        retry_conflicts(
            lambda: record.create(
                items, RepoAlreadyExists(tenant, repo), f"create repository {repo}"
            )
        )

    def _count(self, tenant: str, repo: str, delta: int) -> TransactWriteItemTypeDef:
        """Move the tenant's repository counter (`UR#<tenant>` / `<shard>`, sharded by
        name so creates of two repositories at once do not cancel each other)."""
        shard = zlib.crc32(repo.encode()) % REPO_COUNT_SHARDS
        return {
            "Update": {
                "TableName": self._name,
                "Key": key(f"{REPO_COUNT_PREFIX}{tenant}", str(shard)),
                "UpdateExpression": "ADD #n :d",
                "ExpressionAttributeNames": {"#n": REPO_COUNT},
                "ExpressionAttributeValues": {":d": {"N": str(delta)}},
            }
        }

    def count_repos(self, tenant: str) -> int:
        total = 0
        for item in self._table.query(
            f"count repositories of {tenant}",
            key_condition="pk = :pk",
            values={":pk": {"S": f"{REPO_COUNT_PREFIX}{tenant}"}},
        ):
            total += int(item[REPO_COUNT]["N"])
        return max(0, total)

    def add_repo_bytes(self, tenant: str, delta: int) -> None:
        if not delta:
            return
        # Sharded by time: concurrent pushes rarely write the same item.
        shard = time.monotonic_ns() % REPO_COUNT_SHARDS
        with translated(f"count repository bytes of {tenant}"):
            self._client.update_item(
                TableName=self._name,
                Key=key(f"{REPO_BYTES_PREFIX}{tenant}", str(shard)),
                UpdateExpression="ADD #n :d",
                ExpressionAttributeNames={"#n": REPO_COUNT},
                ExpressionAttributeValues={":d": {"N": str(delta)}},
            )

    def repo_bytes(self, tenant: str) -> int:
        total = 0
        for item in self._table.query(
            f"read repository bytes of {tenant}",
            key_condition="pk = :pk",
            values={":pk": {"S": f"{REPO_BYTES_PREFIX}{tenant}"}},
        ):
            total += int(item[REPO_COUNT]["N"])
        return max(0, total)

    def delete_repo(self, tenant: str, repo: str) -> None:
        """Atomic while the repository has at most 97 refs; else fenced, then purged.

        The fence (one transaction: `deleting` on REPO, listing entry removed) makes the
        repository absent to every reader and refuses every swap; the refs are then
        batch-deleted and REPO last, so an interrupted purge is finished by the next
        delete or create of that name.
        """

        def unchanged(repo_item: Item) -> Condition:
            # No swap since the refs were read: none is left behind.
            return Condition("#seq = :seq", {"#seq": SEQ}, {":seq": repo_item[SEQ]})

        self._record(tenant, repo).delete(
            unchanged,
            RepoNotFound(tenant, repo),
            f"delete repository {repo}",
            extra=lambda _head, _refs: [self._count(tenant, repo, -1)],
        )

    def _ref_keys(self, pk: str) -> list[str]:
        found = self._table.query(
            "list refs",
            key_condition="pk = :pk AND begins_with(sk, :refs)",
            values={":pk": {"S": pk}, ":refs": {"S": t.REF_SK_PREFIX}},
            projection="sk",
        )
        return [item[t.SORT_KEY]["S"] for item in found]

    def repo_exists(self, tenant: str, repo: str) -> bool:
        return self._repo_item(tenant, repo) is not None

    def list_repos(self, tenant: str, *, limit: int = 100, after: str | None = None) -> RepoPage:
        if limit < 1:
            raise InvalidParameter(f"limit must be at least 1, not {limit}")
        values: dict[str, AttributeValueTypeDef] = {":pk": {"S": f"{t.REPO_LIST_PREFIX}{tenant}"}}
        condition = "pk = :pk"
        if after:  # an empty sort key value is invalid in a key condition
            condition += " AND sk > :after"
            values[":after"] = {"S": after}
        found = self._table.query(
            "list repositories", key_condition=condition, values=values, page_size=limit + 1
        )
        names = [item[t.SORT_KEY]["S"] for item in islice(found, limit + 1)]
        more = len(names) > limit
        names = names[:limit]
        return RepoPage(names=names, next_marker=names[-1] if more else None)

    # -- refs ----------------------------------------------------------------------

    def get_refs(self, tenant: str, repo: str) -> dict[bytes, bytes]:
        pk = repo_pk(tenant, repo)
        for attempt in range(ATTEMPTS):
            before = self._repo_item(tenant, repo)
            if before is None:
                raise RepoNotFound(tenant, repo)
            found = self._table.query(
                "read refs",
                key_condition="pk = :pk AND begins_with(sk, :refs)",
                values={":pk": {"S": pk}, ":refs": {"S": t.REF_SK_PREFIX}},
            )
            refs = {bytes(item[REF]["B"]): bytes(item[VALUE]["B"]) for item in found}
            after = self._repo_item(tenant, repo)
            if after is None:
                raise RepoNotFound(tenant, repo)
            if after[SEQ] == before[SEQ]:
                return refs
            backoff(attempt)  # a swap landed while we read: the refs may be torn
        raise ConcurrentModification(f"The refs of '{repo}' kept changing while read.")

    def compare_and_swap(
        self,
        tenant: str,
        repo: str,
        updates: Sequence[RefUpdate],
        *,
        audit: AuditRecord | None = None,
    ) -> None:
        check_updates(updates)
        if len(updates) > MAX_REFS_PER_SWAP:
            # One transaction is what makes the batch all-or-nothing; DynamoDB caps it.
            raise PayloadTooLarge(
                f"An atomic update of {len(updates)} refs exceeds the limit of "
                f"{MAX_REFS_PER_SWAP}; push fewer refs at once or without --atomic."
            )
        pk = repo_pk(tenant, repo)
        items = [self._bump(pk), *(self._ref_write(pk, u) for u in updates)]
        items += audit_writes(self._name, audit, self._audit_days)
        boundary(Kind.REF, "before")
        for attempt in range(ATTEMPTS):
            try:
                self._table.transact(items)
                boundary(Kind.REF, "after")
                return
            except ClientError as exc:
                # A refused condition may be a real mismatch or a race that is already
                # over: only re-reading the values tells which.
                raise_unless_lost_race(exc, f"update refs of {repo}")
            self._raise_mismatch(tenant, repo, updates)
            backoff(attempt)
        raise ConcurrentModification(f"The refs of '{repo}' are too contended; try again.")

    def _bump(self, pk: str) -> TransactWriteItemTypeDef:
        return {
            "Update": {
                "TableName": self._name,
                "Key": key(pk, t.REPO_SK),
                "UpdateExpression": "ADD #seq :one",
                "ConditionExpression": LIVE,
                "ExpressionAttributeNames": {"#seq": SEQ, "#deleting": DELETING},
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }

    def _ref_write(self, pk: str, update: RefUpdate) -> TransactWriteItemTypeDef:
        ref, old, new = update
        item_key = key(pk, ref_sk(ref))
        if is_zero(old):
            check: ConditionCheckTypeDef = {
                "TableName": self._name,
                "Key": item_key,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        else:
            check = {
                "TableName": self._name,
                "Key": item_key,
                "ConditionExpression": "#value = :old",
                "ExpressionAttributeNames": {"#value": VALUE},
                "ExpressionAttributeValues": {":old": {"B": old}},
            }
        if not is_zero(new):
            put: PutTypeDef = {
                "TableName": self._name,
                "Item": {**item_key, REF: {"B": ref}, VALUE: {"B": new}},
                "ConditionExpression": check["ConditionExpression"],
            }
            if "ExpressionAttributeNames" in check:
                put["ExpressionAttributeNames"] = check["ExpressionAttributeNames"]
                put["ExpressionAttributeValues"] = check["ExpressionAttributeValues"]
            return {"Put": put}
        if not is_zero(old):
            # A ConditionCheck and a Delete take the same fields.
            return {"Delete": cast("DeleteTypeDef", check)}
        # ZERO_SHA -> ZERO_SHA: "must not exist, and stays absent" only checks.
        return {"ConditionCheck": check}

    def _raise_mismatch(self, tenant: str, repo: str, updates: Sequence[RefUpdate]) -> None:
        """Raise what the current values say about a cancelled swap, if anything."""
        if self._repo_item(tenant, repo) is None:
            raise RepoNotFound(tenant, repo)
        pk = repo_pk(tenant, repo)
        current = self._table.batch_get(
            [(pk, ref_sk(u.ref)) for u in updates], "read refs", attributes=[VALUE]
        )
        for ref, old, _new in updates:
            item = current.get((pk, ref_sk(ref)))
            actual = None if item is None else bytes(item[VALUE]["B"])
            if (actual is not None) if is_zero(old) else (actual != old):
                raise RefConflict(ref, old, actual)
