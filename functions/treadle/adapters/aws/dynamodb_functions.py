"""DynamoDB adapter of the `FunctionStore`, in the single table (see `tables`).

Items and keys: `function_items` (a table of them); deletes: `function_deletes`.
$LATEST's `body` is the whole FunctionVersion as JSON, so a field added to the model
needs no change here. '$' sorts before every digit, so one Query of the partition lists
$LATEST first and then the versions in number order (ListVersionsByFunction's order).

A publish is ONE TransactWriteItems: an update of $LATEST conditioned on the
`counter` and `revision_id` it read (bumping the counter) and a put of the new
version conditioned on its absence. Of two concurrent publishes exactly one moves the
counter from n to n+1; the other is cancelled, re-reads, and either finds that its
revision was just published (and returns that version, as Lambda does) or takes n+2.
Numbers are never reused while the function exists, even after a version is deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from treadle.adapters.aws import function_listing
from treadle.adapters.aws import tables as t
from treadle.adapters.aws.code_refs import (
    COUNTED,
    SECOND_PASS_AFTER_MS,
    DynamoCodeRefs,
    counted,
    ref_updates,
)
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.dynamodb_aliases import (
    REVISION_MOVED,
    DynamoAliases,
)
from treadle.adapters.aws.dynamodb_audit import audit_writes
from treadle.adapters.aws.function_counts import counts_update, read_counts
from treadle.adapters.aws.function_deletes import FunctionDeletes
from treadle.adapters.aws.function_items import (
    BODY,
    COUNTER,
    LATEST,
    NAMES,
    PUBLISHED_REVISION,
    PUBLISHED_VERSION,
    REVISION,
    body_of,
    function_pk,
    listing_pk,
    not_found,
    number_of,
    version_sk,
)
from treadle.adapters.aws.items import key
from treadle.adapters.aws.optimistic import (
    ATTEMPTS,
    DELETING,
    LIVE,
    backoff,
    raise_unless_lost_race,
    retry_conflicts,
)
from treadle.adapters.aws.payloads import PayloadCodec
from treadle.domain.audit import DEFAULT_RETENTION_DAYS, AuditRecord
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    NotFound,
    PreconditionFailed,
)
from treadle.domain.ports import Alias, FunctionVersion
from treadle.domain.publishing import version_to_publish
from treadle.domain.usage import FunctionCounts

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
    )
    from mypy_boto3_s3 import S3Client

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)


class DynamoFunctionStore:
    """$LATEST and published versions of every tenant's functions in one table.

    No cache, unlike the SQLite twin: many processes (one per Lambda) write the table,
    so a cached $LATEST could be stale, and a version number is reused once its
    function is deleted and re-created.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        audit_retention_days: int = DEFAULT_RETENTION_DAYS,
        s3_client: S3Client | None = None,
        bucket: str | None = None,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        code_backfill_second_pass_ms: int = SECOND_PASS_AFTER_MS,
    ) -> None:
        """`s3_client` and `bucket`: where execution records too big for an item are
        (the code counts' backfill reads records; `dynamodb_executions` writes them);
        `now_ms` and `code_backfill_second_pass_ms`: that backfill's clock and wait
        between its passes (`code_refs.DynamoCodeRefs.backfill`)."""
        self._client = client
        self._table = Table(client, table_name)
        self._name = table_name
        self._audit_days = audit_retention_days
        self._deletes = FunctionDeletes(self._table)
        self._code_refs = DynamoCodeRefs(
            self._table,
            PayloadCodec(s3_client, bucket, 0),
            now_ms=now_ms,
            second_pass_after_ms=code_backfill_second_pass_ms,
        )
        # CodeRefs: the counts these transactions keep (`code_refs`).
        self.unreferenced_code = self._code_refs.unreferenced_code
        self.mark_code_free = self._code_refs.mark_code_free
        self.release_code = self._code_refs.release_code

    def _audit(self, record: AuditRecord | None) -> list[TransactWriteItemTypeDef]:
        return audit_writes(self._name, record, self._audit_days)

    def _append_audit(self, record: AuditRecord | None) -> None:
        """A record on its own, for a call that wrote nothing else (an idempotent
        publish) or whose change cannot take it (see `delete`)."""
        if record is not None:
            self._table.transact(self._audit(record))

    def _latest(self, tenant: str, name: str) -> Item | None:
        """The $LATEST item of a live function (None if absent or being deleted)."""
        item = self._table.get(key(function_pk(tenant, name), t.FUNCTION_LATEST_SK), "get function")
        return None if item is None or DELETING in item else item

    # -- $LATEST ---------------------------------------------------------------------

    def put_latest(
        self,
        fn: FunctionVersion,
        *,
        create: bool,
        expected_revision: str | None = None,
        audit: AuditRecord | None = None,
    ) -> None:
        pk = function_pk(fn.tenant, fn.function_name)
        body: AttributeValueTypeDef = {"S": fn.model_dump_json()}
        revision: AttributeValueTypeDef = {"S": fn.revision_id}
        if not create:
            self._replace_latest(pk, fn, body, revision, expected_revision, audit)
            return
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._name,
                    "Item": {
                        **key(pk, t.FUNCTION_LATEST_SK),
                        BODY: body,
                        REVISION: revision,
                        COUNTER: {"N": "0"},
                        COUNTED: {"BOOL": True},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._name,
                    "Item": key(listing_pk(fn.tenant), fn.function_name),
                }
            },
            *self._audit(audit),
            *ref_updates(self._name, added=[fn]),
        ]
        counter = counts_update(
            self._name, fn.tenant, fn.function_name, functions=1, code_bytes=fn.code_size
        )
        items.extend([counter] if counter else [])
        exists = AlreadyExists(f"Function already exist: {fn.function_name}")
        record = self._deletes.record(fn.tenant, fn.function_name)
        # A conflict on the counter item cancelled everything: the same items may go again.
        retry_conflicts(lambda: record.create(items, exists, f"create function {fn.function_name}"))

    def _replace_latest(
        self,
        pk: str,
        fn: FunctionVersion,
        body: AttributeValueTypeDef,
        revision: AttributeValueTypeDef,
        expected_revision: str | None = None,
        audit: AuditRecord | None = None,
    ) -> None:
        # An update, not a put: the counter and the publish pointer must survive. It is
        # conditioned on the revision read, so the code-size delta it adds to the
        # tenant's counters is against what it replaces.
        action = f"update function {fn.function_name}"
        for attempt in range(ATTEMPTS):
            current = self._latest(fn.tenant, fn.function_name)
            if current is None:
                raise NotFound(f"Function not found: {fn.function_arn}")
            if expected_revision is not None and current[REVISION]["S"] != expected_revision:
                raise PreconditionFailed(REVISION_MOVED)
            items: list[TransactWriteItemTypeDef] = [
                {
                    "Update": {
                        "TableName": self._name,
                        "Key": key(pk, t.FUNCTION_LATEST_SK),
                        "UpdateExpression": "SET #body = :body, #rev = :rev, #cref = :true",
                        "ConditionExpression": f"{LIVE} AND #rev = :seen",
                        "ExpressionAttributeNames": {
                            **{k: NAMES[k] for k in ("#body", "#rev", "#deleting")},
                            "#cref": COUNTED,
                        },
                        "ExpressionAttributeValues": {
                            ":body": body,
                            ":rev": revision,
                            ":seen": current[REVISION],
                            ":true": {"BOOL": True},
                        },
                    }
                }
            ]
            replaced = body_of(current)
            delta = fn.code_size - replaced.code_size
            counter = counts_update(self._name, fn.tenant, fn.function_name, code_bytes=delta)
            items.extend([counter] if counter else [])
            # The revision condition makes `replaced` exactly what this write moves off.
            gone = [replaced] if counted(current) else []
            items.extend(ref_updates(self._name, added=[fn], removed=gone))
            items.extend(self._audit(audit))
            try:
                self._table.transact(items)
                return
            except ClientError as exc:
                raise_unless_lost_race(exc, action)
            backoff(attempt)
        raise ConcurrentModification(f"Function {fn.function_name} keeps changing; retry.")

    def get(self, tenant: str, name: str, version: str = LATEST) -> FunctionVersion:
        if version == LATEST:
            item = self._latest(tenant, name)
        else:
            number = number_of(version)
            item = (
                None
                if number is None
                else self._table.get(key(function_pk(tenant, name), version_sk(number)), "get")
            )
        if item is None:
            raise not_found(name, version)
        return body_of(item)

    def usage(self, tenant: str) -> tuple[int, int]:
        """(functions, code bytes of $LATEST and every version): the counters."""
        counts = self.counts(tenant)
        return counts.functions, counts.code_bytes

    def counts(self, tenant: str) -> FunctionCounts:
        """The counters the function transactions keep (`function_counts`): one Query."""
        return read_counts(self._table, tenant)

    # -- versions --------------------------------------------------------------------

    def publish(
        self,
        tenant: str,
        name: str,
        description: str | None,
        *,
        audit: AuditRecord | None = None,
    ) -> FunctionVersion:
        pk = function_pk(tenant, name)
        for attempt in range(ATTEMPTS):
            latest_item = self._latest(tenant, name)
            if latest_item is None:
                raise not_found(name)
            latest = body_of(latest_item)
            previous = None
            if latest_item.get(PUBLISHED_REVISION, {}).get("S") == latest.revision_id:
                # The pointer names the only version that may hold $LATEST's code.
                frozen = int(latest_item[PUBLISHED_VERSION]["N"])
                existing = self._table.get(key(pk, version_sk(frozen)), "get function version")
                previous = None if existing is None else body_of(existing)
            counter = latest_item[COUNTER]
            number = int(counter["N"]) + 1
            version, new = version_to_publish(latest, previous, number, description)
            if not new:
                self._append_audit(audit)
                return version
            if self._commit_version(pk, version, counter, audit):
                return version
            backoff(attempt)
        raise ConcurrentModification(f"Function {name} is being published concurrently; retry.")

    def _commit_version(
        self,
        pk: str,
        version: FunctionVersion,
        counter: AttributeValueTypeDef,
        audit: AuditRecord | None = None,
    ) -> bool:
        """True if the version was written; False if another writer got there first."""
        number: AttributeValueTypeDef = {"N": version.version}
        revision: AttributeValueTypeDef = {"S": version.revision_id}
        items: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._name,
                    "Key": key(pk, t.FUNCTION_LATEST_SK),
                    "UpdateExpression": "SET #counter = :n, #prev = :rev, #pver = :n",
                    # Unchanged since read: no other publish, no other code or config.
                    "ConditionExpression": f"{LIVE} AND #counter = :old AND #rev = :rev",
                    "ExpressionAttributeNames": {
                        k: NAMES[k] for k in ("#counter", "#prev", "#pver", "#rev", "#deleting")
                    },
                    "ExpressionAttributeValues": {":n": number, ":old": counter, ":rev": revision},
                }
            },
            {
                "Put": {
                    "TableName": self._name,
                    "Item": {
                        **key(pk, version_sk(int(version.version))),
                        BODY: {"S": version.model_dump_json()},
                        COUNTED: {"BOOL": True},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            *self._audit(audit),
            *ref_updates(self._name, added=[version]),
        ]
        counts = counts_update(
            self._name,
            version.tenant,
            version.function_name,
            versions=1,
            code_bytes=version.code_size,
        )
        items.extend([counts] if counts else [])
        try:
            self._table.transact(items)
            return True
        except ClientError as exc:
            raise_unless_lost_race(exc, f"publish {version.function_name}")
            return False

    def list_latest(
        self, tenant: str, marker: str | None, limit: int
    ) -> tuple[list[FunctionVersion], str | None]:
        return function_listing.list_latest(self._table, tenant, marker, limit)

    def list_versions(
        self, tenant: str, name: str, marker: str | None, limit: int
    ) -> tuple[list[FunctionVersion], str | None]:
        return function_listing.list_versions(self._table, tenant, name, marker, limit)

    # -- deletes (function_deletes) -------------------------------------------------

    def delete(
        self,
        tenant: str,
        name: str,
        version: str | None = None,
        *,
        audit: AuditRecord | None = None,
        unless_pinned: bool = False,
    ) -> None:
        self._deletes.delete(tenant, name, version, self._audit(audit), unless_pinned=unless_pinned)

    def live_pins(self, tenant: str, name: str) -> dict[str, int]:
        return self._deletes.live_pins(tenant, name)

    # -- aliases (AliasStore) ----------------------------------------------------------

    def _aliases(self, tenant: str, name: str) -> DynamoAliases:
        return DynamoAliases(self._table, function_pk(tenant, name))

    def create_alias(self, alias: Alias) -> None:
        self._aliases(alias.tenant, alias.function_name).create(alias)

    def get_alias(self, tenant: str, function_name: str, name: str) -> Alias:
        alias = self._aliases(tenant, function_name).get(function_name, name)
        if alias is None:
            raise NotFound(f"Alias not found: {function_name}:{name}")
        return alias

    def list_aliases(
        self,
        tenant: str,
        function_name: str,
        version: str | None,
        marker: str | None,
        limit: int,
    ) -> tuple[list[Alias], str | None]:
        if self._latest(tenant, function_name) is None:
            raise not_found(function_name)
        return self._aliases(tenant, function_name).page(version, marker, max(1, limit))

    def update_alias(self, alias: Alias, expected_revision: str) -> None:
        self._aliases(alias.tenant, alias.function_name).update(alias, expected_revision)

    def delete_alias(self, tenant: str, function_name: str, name: str) -> None:
        self._aliases(tenant, function_name).delete(function_name, name)
