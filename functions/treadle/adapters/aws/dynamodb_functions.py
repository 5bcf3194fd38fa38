"""DynamoDB adapter of the `FunctionStore`, in the single table (see `tables`).

Items of one function share the partition `F#<tenant>#<name>`:

- `V#$LATEST`: the mutable $LATEST (`body`: the whole FunctionVersion as JSON, so a
  field added to the model needs no change here), its `revision_id` (for conditions),
  `counter` (the last version number handed out), `published_revision` and
  `published_version` (which version froze which revision, for idempotent publishes),
  and `deleting` while a big delete is under way;
- `V#<version:012d>`: one published version, immutable (`body`);
- `A#<alias>`: an alias (see `dynamodb_aliases`, which also keeps `alias_seq` on
  $LATEST).

'$' sorts before every digit, so one Query of the partition lists $LATEST first and
then the versions in number order, which is ListVersionsByFunction's order.

`FL#<tenant>` / `<name>` lists a tenant's functions in name order; it is written and
removed in the same transactions as $LATEST.

A publish is ONE TransactWriteItems: an update of $LATEST conditioned on the
`counter` and `revision_id` it read (bumping the counter) and a put of the new
version conditioned on its absence. Of two concurrent publishes exactly one moves the
counter from n to n+1; the other is cancelled, re-reads, and either finds that its
revision was just published (and returns that version, as Lambda does) or takes n+2.
Numbers are never reused while the function exists, even after a version is deleted.
"""

from __future__ import annotations

import logging
from itertools import islice
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.dynamodb_aliases import (
    ALIAS_SEQ,
    REVISION_MOVED,
    DynamoAliases,
)
from treadle.adapters.aws.dynamodb_audit import audit_writes
from treadle.adapters.aws.function_counts import counts_update, read_counts
from treadle.adapters.aws.items import key
from treadle.adapters.aws.optimistic import (
    ATTEMPTS,
    DELETING,
    LIVE,
    Condition,
    FencedRecord,
    backoff,
    raise_unless_lost_race,
    retry_conflicts,
)
from treadle.adapters.aws.version_pins import read_pins, unpinned_checks
from treadle.domain.audit import DEFAULT_RETENTION_DAYS, AuditRecord
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    Conflict,
    InvalidParameter,
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

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

LATEST: Final = "$LATEST"
BODY: Final = "body"
REVISION: Final = "revision_id"
COUNTER: Final = "counter"
PUBLISHED_REVISION: Final = "published_revision"
PUBLISHED_VERSION: Final = "published_version"

_NAMES: Final = {
    "#body": BODY,
    "#rev": REVISION,
    "#counter": COUNTER,
    "#prev": PUBLISHED_REVISION,
    "#pver": PUBLISHED_VERSION,
    "#deleting": DELETING,
}


_VERSIONS_END: Final = "V$"  # just after every `V#...`


def function_pk(tenant: str, name: str) -> str:
    return f"{t.FUNCTION_PREFIX}{tenant}#{name}"


def listing_pk(tenant: str) -> str:
    return f"{t.FUNCTION_LIST_PREFIX}{tenant}"


def version_sk(number: int) -> str:
    return f"{t.FUNCTION_VERSION_SK_PREFIX}{number:012d}"


def _number(version: str) -> int | None:
    """The number of a published version as written ("7"), None for anything else."""
    return int(version) if version.isdigit() and version == str(int(version)) else None


def _body(item: Item) -> FunctionVersion:
    return FunctionVersion.model_validate_json(item[BODY]["S"])


def _not_found(name: str, version: str = LATEST) -> NotFound:
    suffix = "" if version == LATEST else f":{version}"
    return NotFound(f"Function not found: {name}{suffix}")


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
    ) -> None:
        self._client = client
        self._table = Table(client, table_name)
        self._name = table_name
        self._audit_days = audit_retention_days

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
        ]
        counter = counts_update(
            self._name, fn.tenant, fn.function_name, functions=1, code_bytes=fn.code_size
        )
        items.extend([counter] if counter else [])
        exists = AlreadyExists(f"Function already exist: {fn.function_name}")
        record = self._record(fn.tenant, fn.function_name)
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
                        "UpdateExpression": "SET #body = :body, #rev = :rev",
                        "ConditionExpression": f"{LIVE} AND #rev = :seen",
                        "ExpressionAttributeNames": {
                            k: _NAMES[k] for k in ("#body", "#rev", "#deleting")
                        },
                        "ExpressionAttributeValues": {
                            ":body": body,
                            ":rev": revision,
                            ":seen": current[REVISION],
                        },
                    }
                }
            ]
            delta = fn.code_size - _body(current).code_size
            counter = counts_update(self._name, fn.tenant, fn.function_name, code_bytes=delta)
            items.extend([counter] if counter else [])
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
            number = _number(version)
            item = (
                None
                if number is None
                else self._table.get(key(function_pk(tenant, name), version_sk(number)), "get")
            )
        if item is None:
            raise _not_found(name, version)
        return _body(item)

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
                raise _not_found(name)
            latest = _body(latest_item)
            previous = None
            if latest_item.get(PUBLISHED_REVISION, {}).get("S") == latest.revision_id:
                # The pointer names the only version that may hold $LATEST's code.
                frozen = int(latest_item[PUBLISHED_VERSION]["N"])
                existing = self._table.get(key(pk, version_sk(frozen)), "get function version")
                previous = None if existing is None else _body(existing)
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
                        k: _NAMES[k] for k in ("#counter", "#prev", "#pver", "#rev", "#deleting")
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
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            *self._audit(audit),
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
        limit = max(1, limit)
        values: dict[str, AttributeValueTypeDef] = {":pk": {"S": listing_pk(tenant)}}
        condition = "pk = :pk"
        if marker:  # an empty sort key value is invalid in a key condition
            condition += " AND sk > :marker"
            values[":marker"] = {"S": marker}
        found = self._table.query(
            "list functions", key_condition=condition, values=values, page_size=limit + 1
        )
        names = [item[t.SORT_KEY]["S"] for item in islice(found, limit + 1)]
        more = len(names) > limit
        names = names[:limit]
        latest = self._table.batch_get(
            [(function_pk(tenant, n), t.FUNCTION_LATEST_SK) for n in names], "get functions"
        )
        items = [latest.get((function_pk(tenant, n), t.FUNCTION_LATEST_SK)) for n in names]
        # Listing entries leave with the fence of a delete: a miss is a race with one.
        functions = [_body(i) for i in items if i is not None and DELETING not in i]
        return functions, (names[-1] if more else None)

    def list_versions(
        self, tenant: str, name: str, marker: str | None, limit: int
    ) -> tuple[list[FunctionVersion], str | None]:
        limit = max(1, limit)
        try:
            after = int(marker) if marker else -1
        except ValueError:
            raise InvalidParameter(f"Invalid marker {marker!r}.") from None
        # The versions' own range of the partition (aliases sort before it).
        low = t.FUNCTION_VERSION_SK_PREFIX
        if after >= 0:  # the marker is the last number returned; $LATEST counts as 0
            low = t.FUNCTION_LATEST_SK if after == 0 else version_sk(after)
        values: dict[str, AttributeValueTypeDef] = {
            ":pk": {"S": function_pk(tenant, name)},
            ":low": {"S": low},
            ":high": {"S": _VERSIONS_END},
        }
        found = self._table.query(
            "list function versions",
            key_condition="pk = :pk AND sk BETWEEN :low AND :high",
            values=values,
            page_size=limit + 2,
        )
        # BETWEEN includes the marker's own item, which the previous page returned.
        rows = list(islice((r for r in found if after < 0 or r[t.SORT_KEY]["S"] != low), limit + 1))
        if after < 0 and (not rows or DELETING in rows[0]):
            raise _not_found(name)
        more = len(rows) > limit
        rows = rows[:limit]
        versions = [_body(r) for r in rows]
        if not more:
            return versions, None
        # The marker is what SQLite pages on: the version number, 0 for $LATEST.
        last = versions[-1].version
        return versions, "0" if last == LATEST else last

    # -- deletes ---------------------------------------------------------------------

    def delete(
        self,
        tenant: str,
        name: str,
        version: str | None = None,
        *,
        audit: AuditRecord | None = None,
        unless_pinned: bool = False,
    ) -> None:
        if version is None:
            self._delete_function(tenant, name, audit, unless_pinned=unless_pinned)
            return
        number = _number(version)
        if number is None:
            if version == LATEST:  # it holds the counter: refuse rather than orphan it
                raise InvalidParameter(
                    "$LATEST version cannot be deleted without deleting the function."
                )
            raise _not_found(name, version)
        # Versions are immutable: the size read now is the size the delete removes.
        item = self._table.get(key(function_pk(tenant, name), version_sk(number)), "get version")
        if item is None:
            raise _not_found(name, version)
        counter = counts_update(
            self._name, tenant, name, versions=-1, code_bytes=-_body(item).code_size
        )
        pins = self._unpinned(tenant, name, version) if unless_pinned else []
        try:
            self._aliases(tenant, name).delete_version(
                name,
                version_sk(number),
                version,
                extra=[*([counter] if counter else []), *self._audit(audit), *pins],
            )
        except ConcurrentModification:
            if unless_pinned:  # a pin's ConditionCheck refused it: say so if it holds
                self._unpinned(tenant, name, version)
            raise

    def live_pins(self, tenant: str, name: str) -> dict[str, int]:
        return read_pins(self._table, tenant, name)

    def _unpinned(
        self, tenant: str, name: str, version: str | None
    ) -> list[TransactWriteItemTypeDef]:
        """Conflict if pinned now; else the checks that keep it so in the transaction (a
        commit pinning it meanwhile cancels the delete, whose retry then reads the pin)."""
        pins = self.live_pins(tenant, name)
        if (sum(pins.values()) if version is None else pins.get(version, 0)) > 0:
            what = name if version is None else f"{name}:{version}"
            raise Conflict(f"Function {what} has executions that are not closed.")
        return unpinned_checks(self._name, tenant, name, version)

    def _record(self, tenant: str, name: str) -> FencedRecord:
        """A function as a fenced record: $LATEST heads its versions."""
        pk = function_pk(tenant, name)
        return FencedRecord(
            self._table,
            pk,
            t.FUNCTION_LATEST_SK,
            listing=key(listing_pk(tenant), name),
            children=lambda: self._version_sks(pk),
        )

    def _delete_function(
        self, tenant: str, name: str, audit: AuditRecord | None, *, unless_pinned: bool = False
    ) -> None:
        def unchanged(latest: Item) -> Condition:
            # No publish and no alias written since the children were read: none is
            # orphaned.
            names = {"#counter": COUNTER, "#deleting": DELETING, "#aseq": ALIAS_SEQ}
            values = {":counter": latest[COUNTER]}
            if ALIAS_SEQ in latest:
                values[":aseq"] = latest[ALIAS_SEQ]
                aliases = "#aseq = :aseq"
            else:
                aliases = "attribute_not_exists(#aseq)"
            return Condition(f"{LIVE} AND #counter = :counter AND {aliases}", names, values)

        def uncount(latest: Item, children: list[str]) -> list[TransactWriteItemTypeDef]:
            # The children were listed after `latest` was read and `unchanged` fences
            # them, so these are exactly the versions the delete removes.
            pk = function_pk(tenant, name)
            versions = [sk for sk in children if sk.startswith(t.FUNCTION_VERSION_SK_PREFIX)]
            found = self._table.batch_get([(pk, sk) for sk in versions], "size versions")
            code = _body(latest).code_size + sum(_body(i).code_size for i in found.values())
            counter = counts_update(
                self._name, tenant, name, functions=-1, versions=-len(versions), code_bytes=-code
            )
            pins = self._unpinned(tenant, name, None) if unless_pinned else []
            return [*([counter] if counter else []), *pins]

        self._record(tenant, name).delete(
            unchanged,
            _not_found(name),
            f"delete function {name}",
            extra=uncount,
            audit=self._audit(audit),
        )

    def _version_sks(self, pk: str) -> list[str]:
        found = self._table.query(
            "list function versions",
            key_condition="pk = :pk",
            values={":pk": {"S": pk}},
            projection="sk",
        )
        return [sk for item in found if (sk := item[t.SORT_KEY]["S"]) != t.FUNCTION_LATEST_SK]

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
            raise _not_found(function_name)
        return self._aliases(tenant, function_name).page(version, marker, max(1, limit))

    def update_alias(self, alias: Alias, expected_revision: str) -> None:
        self._aliases(alias.tenant, alias.function_name).update(alias, expected_revision)

    def delete_alias(self, tenant: str, function_name: str, name: str) -> None:
        self._aliases(tenant, function_name).delete(function_name, name)
