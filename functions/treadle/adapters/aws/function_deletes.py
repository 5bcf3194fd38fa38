"""Deleting a function or one of its versions from the single table (`function_items`).

A version's delete is one transaction with its alias check (`dynamodb_aliases`), the
tenant's counters, the audit record and, for the collector, the checks that no open
execution is pinned to it (`version_pins`). A function's is a fenced record
(`optimistic.FencedRecord`): atomic while it fits one transaction, else fenced first.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.code_refs import IN_TRANSACTION_MAX, counted, ref_updates
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.dynamodb_aliases import ALIAS_SEQ, DynamoAliases
from treadle.adapters.aws.function_counts import counts_update
from treadle.adapters.aws.function_items import (
    COUNTER,
    LATEST,
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
    Condition,
    FencedRecord,
    backoff,
    lost_race,
)
from treadle.adapters.aws.version_pins import read_pins, unpinned_checks
from treadle.domain.errors import ConcurrentModification, Conflict, InvalidParameter

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

    Item = dict[str, AttributeValueTypeDef]


class FunctionDeletes:
    def __init__(self, table: Table) -> None:
        self._table = table

    def _aliases(self, tenant: str, name: str) -> DynamoAliases:
        return DynamoAliases(self._table, function_pk(tenant, name))

    def delete(
        self,
        tenant: str,
        name: str,
        version: str | None,
        audit: list[TransactWriteItemTypeDef],
        *,
        unless_pinned: bool = False,
    ) -> None:
        """`audit`: the record's items, in the delete's own transaction."""
        if version is None:
            self._delete_function(tenant, name, audit, unless_pinned=unless_pinned)
            return
        number = number_of(version)
        if number is None:
            if version == LATEST:  # it holds the counter: refuse rather than orphan it
                raise InvalidParameter(
                    "$LATEST version cannot be deleted without deleting the function."
                )
            raise not_found(name, version)
        # Versions are immutable: the size read now is the size the delete removes.
        item = self._table.get(key(function_pk(tenant, name), version_sk(number)), "get version")
        if item is None:
            raise not_found(name, version)
        body = body_of(item)
        counter = counts_update(
            self._table.name, tenant, name, versions=-1, code_bytes=-body.code_size
        )
        refs = ref_updates(self._table.name, removed=[body] if counted(item) else [])
        pins = self._unpinned(tenant, name, version) if unless_pinned else []
        try:
            self._aliases(tenant, name).delete_version(
                name,
                version_sk(number),
                version,
                extra=[*([counter] if counter else []), *refs, *audit, *pins],
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
        return unpinned_checks(self._table.name, tenant, name, version)

    def record(self, tenant: str, name: str) -> FencedRecord:
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
        self,
        tenant: str,
        name: str,
        audit: list[TransactWriteItemTypeDef],
        *,
        unless_pinned: bool = False,
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

        later: list[TransactWriteItemTypeDef] = []

        def uncount(latest: Item, children: list[str]) -> list[TransactWriteItemTypeDef]:
            # The children were listed after `latest` was read and `unchanged` fences
            # them, so these are exactly the versions the delete removes.
            pk = function_pk(tenant, name)
            versions = [sk for sk in children if sk.startswith(t.FUNCTION_VERSION_SK_PREFIX)]
            found = self._table.batch_get([(pk, sk) for sk in versions], "size versions")
            code = body_of(latest).code_size + sum(body_of(i).code_size for i in found.values())
            counter = counts_update(
                self._table.name,
                tenant,
                name,
                functions=-1,
                versions=-len(versions),
                code_bytes=-code,
            )
            pins = self._unpinned(tenant, name, None) if unless_pinned else []
            gone = [body_of(i) for i in (latest, *found.values()) if counted(i)]
            refs = ref_updates(self._table.name, removed=gone)
            later[:] = refs[IN_TRANSACTION_MAX:]
            return [*([counter] if counter else []), *refs[:IN_TRANSACTION_MAX], *pins]

        self.record(tenant, name).delete(
            unchanged,
            not_found(name),
            f"delete function {name}",
            extra=uncount,
            audit=audit,
        )
        # Counts of more packages than one transaction takes: moved now that the
        # function is gone. A batch cancelled by a concurrent count's write applied
        # nothing and goes again; one that still fails, or a crash before, leaves its
        # counts too high: the packages stay, and the delete (done) is not failed.
        for start in range(0, len(later), 100):
            self._release_counts(later[start : start + 100])

    def _release_counts(self, items: list[TransactWriteItemTypeDef]) -> None:
        for attempt in range(ATTEMPTS):
            try:
                self._table.transact(items)
                return
            except ClientError as exc:
                if not lost_race(exc):
                    break
            backoff(attempt)
        log.warning("%d code package counts left too high (kept packages)", len(items))

    def _version_sks(self, pk: str) -> list[str]:
        found = self._table.query(
            "list function versions",
            key_condition="pk = :pk",
            values={":pk": {"S": pk}},
            projection="sk",
        )
        return [sk for item in found if (sk := item[t.SORT_KEY]["S"]) != t.FUNCTION_LATEST_SK]
