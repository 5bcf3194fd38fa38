"""DynamoDB adapter of the `TenantStore`, in the single table (see `tables`).

Items:

- `A#<account>` / `TENANT`: the tenant (name, created_ms, disabled, quotas as JSON);
- `A#<account>` / `K#<created_ms:015d>#<key id>`: one entry per access key of the
  tenant, so one Query lists them oldest first (and finds the tenant item with them);
- `AK#<key id>` / `KEY`: the access key itself (owner, secret, status). Every request
  authenticates with `find_key`, so it is one GetItem by id, plus one for the tenant;
- `AL` / `<account>`: the listing of tenants in account id order. One partition for
  every tenant is fine: it is written once per tenant created and read by admins only.

The key record is the only copy of a key's status and secret; the `K#` entry holds
nothing but the key id, so a status change is one conditional UpdateItem.

Secrets are stored in plain text, as the SQLite twin does: SigV4 verification must
recompute the HMAC with the secret, so a one-way hash cannot work. The table is
encrypted at rest by the stack (KMS) and only the platform's roles may read it.

Every multi-item write is one TransactWriteItems: a generated account id or key id
is claimed with `attribute_not_exists(pk)` and drawn again on collision; a rotation
deactivates the old key on the condition that it is still the caller's and Active, so
two concurrent rotations of one key leave exactly one new key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Final

from pydantic import SecretStr

from treadle.adapters.aws import tables as t
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.dynamodb_audit import audit_writes, audited_update
from treadle.adapters.aws.items import key
from treadle.adapters.aws.optimistic import conditional, transact
from treadle.domain.audit import DEFAULT_RETENTION_DAYS, AuditRecord
from treadle.domain.errors import Conflict, NotFound, TreadleError
from treadle.tenancy.models import EGRESS, AccessKey, Egress, KeyStatus, Quotas, Tenant
from treadle.tenancy.stores import IdTaken, TenantStoreBase

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        TransactWriteItemTypeDef,
        UpdateTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]

log = logging.getLogger(__name__)

NAME: Final = "name"
CREATED_MS: Final = "created_ms"
DISABLED: Final = "disabled"
QUOTAS: Final = "quotas"
EGRESS_POLICY: Final = "egress"  # absent from items written before it existed: "none"
TENANT: Final = "tenant"
SECRET: Final = "secret"
STATUS: Final = "status"


def tenant_pk(account_id: str) -> str:
    return f"{t.ACCOUNT_PREFIX}{account_id}"


def access_key_pk(access_key_id: str) -> str:
    return f"{t.ACCESS_KEY_PREFIX}{access_key_id}"


def key_entry_sk(created_ms: int, access_key_id: str) -> str:
    # Zero-padded: string order is creation order; the id breaks ties as SQLite does.
    return f"{t.TENANT_KEY_SK_PREFIX}{created_ms:015d}#{access_key_id}"


def _tenant(item: Item) -> Tenant:
    return Tenant(
        account_id=item[t.PARTITION_KEY]["S"][len(t.ACCOUNT_PREFIX) :],
        name=item[NAME]["S"],
        created_ms=int(item[CREATED_MS]["N"]),
        disabled=bool(item[DISABLED]["BOOL"]),
        quotas=Quotas.model_validate_json(item[QUOTAS]["S"]),
        egress=EGRESS.validate_json(item[EGRESS_POLICY]["S"]) if EGRESS_POLICY in item else "none",
    )


def _access_key(item: Item) -> AccessKey:
    return AccessKey(
        access_key_id=item[t.PARTITION_KEY]["S"][len(t.ACCESS_KEY_PREFIX) :],
        tenant=item[TENANT]["S"],
        secret=SecretStr(item[SECRET]["S"]),
        status=KeyStatus(item[STATUS]["S"]),
        created_ms=int(item[CREATED_MS]["N"]),
    )


class DynamoTenantStore(TenantStoreBase):
    """Tenants and access keys in one DynamoDB table; every method is atomic."""

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

    # -- item writes -----------------------------------------------------------------

    def _put(self, item: Item, *, new: bool) -> TransactWriteItemTypeDef:
        put: TransactWriteItemTypeDef = {"Put": {"TableName": self._name, "Item": item}}
        if new:
            put["Put"]["ConditionExpression"] = "attribute_not_exists(pk)"
        return put

    def _tenant_writes(self, tenant: Tenant) -> list[TransactWriteItemTypeDef]:
        record: Item = {
            **key(tenant_pk(tenant.account_id), t.TENANT_SK),
            NAME: {"S": tenant.name},
            CREATED_MS: {"N": str(tenant.created_ms)},
            DISABLED: {"BOOL": tenant.disabled},
            QUOTAS: {"S": tenant.quotas.model_dump_json()},
            EGRESS_POLICY: {"S": EGRESS.dump_json(tenant.egress).decode()},
        }
        listing = key(t.TENANT_LIST_PK, tenant.account_id)
        return [self._put(record, new=True), self._put(listing, new=False)]

    def _key_writes(self, k: AccessKey) -> list[TransactWriteItemTypeDef]:
        record: Item = {
            **key(access_key_pk(k.access_key_id), t.ACCESS_KEY_SK),
            TENANT: {"S": k.tenant},
            SECRET: {"S": k.secret.get_secret_value()},
            STATUS: {"S": k.status.value},
            CREATED_MS: {"N": str(k.created_ms)},
        }
        entry = key(tenant_pk(k.tenant), key_entry_sk(k.created_ms, k.access_key_id))
        return [self._put(record, new=True), self._put(entry, new=False)]

    def _tenant_exists(self, account_id: str) -> TransactWriteItemTypeDef:
        return {
            "ConditionCheck": {
                "TableName": self._name,
                "Key": key(tenant_pk(account_id), t.TENANT_SK),
                "ConditionExpression": "attribute_exists(pk)",
            }
        }

    def _transact(
        self,
        action: str,
        items: list[TransactWriteItemTypeDef],
        labels: list[str],
        on_condition: Callable[[str], TreadleError],
    ) -> None:
        transact(self._table, items, action, labels, on_condition)

    # -- tenants -----------------------------------------------------------------------

    def _insert_tenant(
        self, tenant: Tenant, access: AccessKey | None, audit: AuditRecord | None
    ) -> None:
        items = self._tenant_writes(tenant)
        labels = ["tenant", "tenant listing"]
        if access is not None:
            items += self._key_writes(access)
            labels += ["key", "key entry"]
        audit_items = self._audit(audit)
        items += audit_items
        labels += ["audit"] * len(audit_items)
        # Only the tenant and key records are conditional: either is a taken id.
        self._transact(
            f"create tenant {tenant.name}",
            items,
            labels,
            lambda label: IdTaken("tenant" if label == "tenant" else "key"),
        )

    def _tenant_item(self, account_id: str) -> Item | None:
        return self._table.get(key(tenant_pk(account_id), t.TENANT_SK), "read tenant")

    def get_tenant(self, account_id: str) -> Tenant:
        item = self._tenant_item(account_id)
        if item is None:
            raise NotFound(f"Tenant not found: {account_id}")
        return _tenant(item)

    def list_tenants(
        self, marker: str | None = None, limit: int = 100
    ) -> tuple[list[Tenant], str | None]:
        limit = max(1, min(limit, 1000))
        values: dict[str, AttributeValueTypeDef] = {":pk": {"S": t.TENANT_LIST_PK}}
        condition = "pk = :pk"
        if marker:  # an empty sort key value is invalid in a key condition
            condition += " AND sk > :marker"
            values[":marker"] = {"S": marker}
        found = self._table.query(
            "list tenants", key_condition=condition, values=values, page_size=limit + 1
        )
        ids = [item[t.SORT_KEY]["S"] for item in islice(found, limit + 1)]
        more = len(ids) > limit
        ids = ids[:limit]
        records = self._table.batch_get([(tenant_pk(a), t.TENANT_SK) for a in ids], "read tenants")
        # The listing entry is written with the tenant, in one transaction: both exist.
        tenants = [_tenant(records[(tenant_pk(a), t.TENANT_SK)]) for a in ids]
        return tenants, (ids[-1] if more else None)

    def _update_tenant(
        self,
        account_id: str,
        expression: str,
        value: AttributeValueTypeDef,
        name: str,
        audit: AuditRecord | None = None,
    ) -> Tenant:
        missing = NotFound(f"Tenant not found: {account_id}")
        if audit is not None:
            # With its audit record: one transaction, then the tenant as it now is.
            update: UpdateTypeDef = {
                "TableName": self._name,
                "Key": key(tenant_pk(account_id), t.TENANT_SK),
                "UpdateExpression": expression,
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeNames": {"#a": name},
                "ExpressionAttributeValues": {":v": value},
            }
            action = f"update tenant {account_id}"
            audited_update(self._table, update, self._audit(audit), action, missing)
            return self.get_tenant(account_id)
        with conditional(f"update tenant {account_id}", missing):
            response = self._client.update_item(
                TableName=self._name,
                Key=key(tenant_pk(account_id), t.TENANT_SK),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#a": name},
                ExpressionAttributeValues={":v": value},
                ReturnValues="ALL_NEW",
            )
        return _tenant(response["Attributes"])

    def set_tenant_disabled(
        self, account_id: str, disabled: bool, *, audit: AuditRecord | None = None
    ) -> Tenant:
        return self._update_tenant(account_id, "SET #a = :v", {"BOOL": disabled}, DISABLED, audit)

    def update_quotas(
        self, account_id: str, quotas: Quotas, *, audit: AuditRecord | None = None
    ) -> Tenant:
        return self._update_tenant(
            account_id, "SET #a = :v", {"S": quotas.model_dump_json()}, QUOTAS, audit
        )

    def update_egress(
        self, account_id: str, egress: Egress, *, audit: AuditRecord | None = None
    ) -> Tenant:
        value: AttributeValueTypeDef = {"S": EGRESS.dump_json(egress).decode()}
        return self._update_tenant(account_id, "SET #a = :v", value, EGRESS_POLICY, audit)

    # -- keys ------------------------------------------------------------------------

    def _insert_key(self, access: AccessKey, audit: AuditRecord | None) -> None:
        def refused(label: str) -> TreadleError:
            if label == "tenant":
                return NotFound(f"Tenant not found: {access.tenant}")
            return IdTaken("key")

        items = [self._tenant_exists(access.tenant), *self._key_writes(access)]
        items += self._audit(audit)
        self._transact("create access key", items, ["tenant", "key"], refused)

    def list_keys(self, account_id: str) -> list[AccessKey]:
        # One Query finds the tenant item (sk TENANT) and its key entries (sk K#...).
        found = list(
            self._table.query(
                "list access keys",
                key_condition="pk = :pk",
                values={":pk": {"S": tenant_pk(account_id)}},
            )
        )
        sks = [item[t.SORT_KEY]["S"] for item in found]
        if t.TENANT_SK not in sks:
            raise NotFound(f"Tenant not found: {account_id}")
        ids = [sk.rsplit("#", 1)[1] for sk in sks if sk.startswith(t.TENANT_KEY_SK_PREFIX)]
        records = self._table.batch_get(
            [(access_key_pk(i), t.ACCESS_KEY_SK) for i in ids], "read access keys"
        )
        # Sort keys are in creation order already; entries come with their records.
        return [_access_key(records[(access_key_pk(i), t.ACCESS_KEY_SK)]) for i in ids]

    def _owned_key(self, account_id: str, access_key_id: str) -> AccessKey:
        item = self._table.get(
            key(access_key_pk(access_key_id), t.ACCESS_KEY_SK), "read access key"
        )
        if item is None or item[TENANT]["S"] != account_id:
            # The same answer whether the key is absent or another tenant's.
            raise NotFound(f"Access key not found: {access_key_id}")
        return _access_key(item)

    def set_key_status(
        self,
        account_id: str,
        access_key_id: str,
        status: KeyStatus,
        *,
        audit: AuditRecord | None = None,
    ) -> AccessKey:
        missing = NotFound(f"Access key not found: {access_key_id}")
        if audit is not None:
            update: UpdateTypeDef = {
                "TableName": self._name,
                "Key": key(access_key_pk(access_key_id), t.ACCESS_KEY_SK),
                "UpdateExpression": "SET #status = :status",
                "ConditionExpression": "#tenant = :tenant",
                "ExpressionAttributeNames": {"#status": STATUS, "#tenant": TENANT},
                "ExpressionAttributeValues": {
                    ":status": {"S": status.value},
                    ":tenant": {"S": account_id},
                },
            }
            audited_update(self._table, update, self._audit(audit), "update access key", missing)
            return self._owned_key(account_id, access_key_id)
        with conditional("update access key", missing):
            response = self._client.update_item(
                TableName=self._name,
                Key=key(access_key_pk(access_key_id), t.ACCESS_KEY_SK),
                UpdateExpression="SET #status = :status",
                # Never touch another tenant's key: the owner is part of the condition.
                ConditionExpression="#tenant = :tenant",
                ExpressionAttributeNames={"#status": STATUS, "#tenant": TENANT},
                ExpressionAttributeValues={
                    ":status": {"S": status.value},
                    ":tenant": {"S": account_id},
                },
                ReturnValues="ALL_NEW",
            )
        return _access_key(response["Attributes"])

    def _replace_key(self, old_key_id: str, access: AccessKey, audit: AuditRecord | None) -> None:
        account_id = access.tenant
        deactivate: TransactWriteItemTypeDef = {
            "Update": {
                "TableName": self._name,
                "Key": key(access_key_pk(old_key_id), t.ACCESS_KEY_SK),
                "UpdateExpression": "SET #status = :inactive",
                "ConditionExpression": "#tenant = :tenant AND #status = :active",
                "ExpressionAttributeNames": {"#status": STATUS, "#tenant": TENANT},
                "ExpressionAttributeValues": {
                    ":tenant": {"S": account_id},
                    ":active": {"S": KeyStatus.ACTIVE.value},
                    ":inactive": {"S": KeyStatus.INACTIVE.value},
                },
            }
        }
        stale = Conflict(f"Access key {old_key_id} is not active; it cannot be rotated.")

        def refused(label: str) -> TreadleError:
            return stale if label == "old key" else IdTaken("key")

        items = [deactivate, *self._key_writes(access), *self._audit(audit)]
        try:
            self._transact("rotate access key", items, ["old key", "new key"], refused)
        except Conflict as exc:
            if exc is not stale:
                raise
            # Absent or another tenant's is NotFound; ours but inactive is Conflict.
            self._owned_key(account_id, old_key_id)
            raise

    def find_key(self, access_key_id: str) -> tuple[AccessKey, Tenant] | None:
        item = self._table.get(
            key(access_key_pk(access_key_id), t.ACCESS_KEY_SK), "read access key"
        )
        if item is None:
            return None
        access = _access_key(item)
        owner = self._tenant_item(access.tenant)
        if owner is None:  # tenants are never deleted; a stray key authenticates nobody
            log.warning("access key %s belongs to no tenant", access_key_id)
            return None
        return access, _tenant(owner)
