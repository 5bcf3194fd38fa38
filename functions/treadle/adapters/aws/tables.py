"""The DynamoDB single table of the AWS adapters: names, shape and creation.

These constants are the contract between the adapters, `create_tables` (tests and
`treadle dev --backend aws`) and the CDK stack, which must declare the same keys, indexes
and TTL attribute. Changing one of them is a data migration, not a refactoring.

Key schema (all key attributes are strings unless noted):

| item | pk | sk |
|---|---|---|
| execution record, own timers | `X#<arn>` | `META` |
| operations of one commit (batch log) | `X#<arn>` | `B#<version:012d>` |
| history events of one commit | `X#<arn>` | `E#<last event id:012d>` |
| a timer set by another execution | `X#<arn>` | `T#<kind>#<op id>` |
| a checkpoint ClientToken response | `X#<arn>` | `K#<client token>` |
| execution-name uniqueness guard | `N#<tenant>#<function>#<name>` | `N` |
| callback id -> owner | `C#<callback id>` | `C` |
| repository (exists, fence, `seq`) | `R#<tenant>#<repo>` | `REPO` |
| one ref of a repository | `R#<tenant>#<repo>` | `REF#<sha256(ref name) hex>` |
| repository listing entry | `RL#<tenant>` | `<repo>` |
| repository token (by id: Git auth) | `RT#<token id>` | `TOKEN` |
| repository token listing entry | `RTL#<tenant>#<repo>` | `<token id>` |
| tenant record | `A#<account id>` | `TENANT` |
| access key listing entry (per tenant) | `A#<account id>` | `K#<created_ms:015d>#<key id>` |
| tenants listing entry | `AL` | `<account id>` |
| access key record (by id: request auth) | `AK#<access key id>` | `KEY` |
| function $LATEST (+ version counter) | `F#<tenant>#<name>` | `V#$LATEST` |
| published function version | `F#<tenant>#<name>` | `V#<version:012d>` |
| function listing entry | `FL#<tenant>` | `<name>` |
| a tenant's RUNNING (and usage) counters, one shard | `U#<tenant>` | `RUNNING#<shard>` |
| a tenant's starts in one minute, one shard (`ttl`) | `UM#<tenant>` | `<minute:012d>#<shard>` |
| a tenant's functions, versions, code bytes, one shard | `UF#<tenant>` | `<shard>` |
| a tenant's repositories, one shard | `UR#<tenant>` | `<shard>` |
| a code package's references (`code_refs.py`) | `CR` | `<sha256 hex>` |
| the count of references' backfill (`code_refs.py`) | `CRS` | `STATE` |
| a QUEUED execution's queue entry (`start_queue.py`) | `Q#<tenant>` | `<start_ms:015d>#<id>` |
| a tenant's QUEUED count, one shard (the backlog set) | `QB` | `<tenant>#<shard>` |
| when a resource was last used (`dynamodb_last_used.py`) | `LU#<tenant>#<kind>` | `<resource>` |
| a schedule (`dynamodb_schedules.py`) | `SC#<tenant>` | `<schedule name>` |
| status-change event (the stream) | `S#<tenant>` | `<time ms:013d>#<event id>` |
| status-change event not yet relayed (outbox) | `O#<shard>` | `<time ms:013d>#<event id>` |
| webhook | `W#<tenant>` | `<webhook id>` |
| webhook delivery (record, attempts) | `WD#<tenant>#<webhook id>` | `<time ms:013d>#<event id>` |
| pending delivery, by due time | `WQ#<shard>` | `<due ms:013d>#<tenant>#<webhook id>#<key>` |

The running counter is spread over `RUNNING_SHARDS` items (the execution's ARN picks its
shard) because the transactions that start or close executions update it, and two
transactions touching one item at once cancel each other (TransactionConflict); the
count is their sum, read by one consistent Query of the tenant's partition. Like the
records below it carries no TTL.

Notification items (`dynamodb_notifications`) are found by key or by a Query of one
partition, and all carry `ttl` (their 7-day retention) except webhooks.

The artifact, tenant and function records are found by key or by a Query of one
partition only: none of them carries an index attribute or a TTL (they live until
deleted). Listing entries exist because "every repository/function of a tenant" and
"every tenant" would otherwise need a Scan or a new index. Repository tokens are the
exception: both their items carry `ttl` (expiry plus an hour), so dead tokens go away.

Indexes (every one KEYS_ONLY or near it: an index is rewritten whenever an attribute it
projects changes, and the execution record changes on every checkpoint):

- `by-function`: `function_key` / `start_key` -- executions of a function by start time.
- `by-function-status`: `status_key` / `start_key` -- the same, one partition per status.
- `due-timers` (sparse): `due_shard` / `due_ms` (number) -- executions with timers, by
  their earliest due time, plus timers set by other executions (shards `0`..`3`); and
  unpaused schedules by when a scheduler must look at them (shards `S0`..`S3`).
- `active-invocations` (sparse): `active_shard` -- executions holding an invocation lease.
- `by-code`: `code_key` -- executions by the code package they run (written once, at
  creation: the attribute never changes), so that garbage collection keeps a package an
  execution still needs (`code_refs.py`).

The two sweep indexes spread their items over `INDEX_SHARDS` partition values so that one
hot partition key does not cap the write rate; readers query every shard and merge.

TTL (`ttl`, epoch seconds) is a backstop, not the retention mechanism: the engine deletes
an execution when its RETENTION timer fires. Every item of an execution carries
start (or its last status change, if later) + execution timeout + retention +
`TTL_GRACE_S`, a time by which the engine has deleted it, so TTL only reclaims what an
interrupted delete or a cancelled transaction left behind. That bound holds because the
execution timeout keeps running while an execution is paused; if pausing ever stops that
clock, `items.expires_at` must follow. A QUEUED execution's items carry no TTL: its
timeout counts from its promotion, however long it waited (`items.expires_at`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from treadle.adapters.aws.errors import error_code, translated

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeDefinitionTypeDef,
        GlobalSecondaryIndexTypeDef,
        KeySchemaElementTypeDef,
        ProjectionTypeDef,
    )

log = logging.getLogger(__name__)

PARTITION_KEY: Final = "pk"
SORT_KEY: Final = "sk"
TTL_ATTRIBUTE: Final = "ttl"

GSI_BY_FUNCTION: Final = "by-function"
GSI_BY_FUNCTION_STATUS: Final = "by-function-status"
GSI_DUE_TIMERS: Final = "due-timers"
GSI_ACTIVE_INVOCATIONS: Final = "active-invocations"
GSI_BY_CODE: Final = "by-code"

FUNCTION_KEY: Final = "function_key"
STATUS_KEY: Final = "status_key"
START_KEY: Final = "start_key"
DUE_SHARD: Final = "due_shard"
DUE_MS: Final = "due_ms"
ACTIVE_SHARD: Final = "active_shard"
# Immutable per execution, so projecting them into the listing indexes costs no writes.
EXECUTION_NAME: Final = "execution_name"
FUNCTION_VERSION: Final = "function_version"
# The code package an execution runs (pinned at its start, so immutable too).
CODE_KEY: Final = "code_key"

# -- artifact refs, tenants, functions: key prefixes (see the table above) -------------
# A tenant is a 12-digit account id and holds no '#', so `<prefix><tenant>#<name>` is
# unambiguous whatever the name contains.
REPO_PREFIX: Final = "R#"
REPO_SK: Final = "REPO"
REF_SK_PREFIX: Final = "REF#"
REPO_LIST_PREFIX: Final = "RL#"
REPO_TOKEN_PREFIX: Final = "RT#"
REPO_TOKEN_SK: Final = "TOKEN"
REPO_TOKEN_LIST_PREFIX: Final = "RTL#"
ACCOUNT_PREFIX: Final = "A#"
TENANT_SK: Final = "TENANT"
TENANT_KEY_SK_PREFIX: Final = "K#"
TENANT_LIST_PK: Final = "AL"
ACCESS_KEY_PREFIX: Final = "AK#"
ACCESS_KEY_SK: Final = "KEY"
# Not to be confused with the `function_key` GSI attribute of executions, which has
# the same spelling: that is another attribute, and these items never carry it.
FUNCTION_PREFIX: Final = "F#"
FUNCTION_VERSION_SK_PREFIX: Final = "V#"
FUNCTION_LATEST_SK: Final = "V#$LATEST"  # '$' sorts before digits: $LATEST comes first
FUNCTION_LIST_PREFIX: Final = "FL#"
USAGE_PREFIX: Final = "U#"
RUNNING_SK_PREFIX: Final = "RUNNING#"

# Readers query every shard, so raising this is safe only if readers are deployed first.
INDEX_SHARDS: Final = 4
# Readers sum whatever shards exist, so this may change at any time: an execution
# counted in one shard and uncounted in another still sums right.
RUNNING_SHARDS: Final = 8
# A day beyond the last moment the engine itself would delete the execution.
TTL_GRACE_S: Final = 86_400


def _string(name: str) -> AttributeDefinitionTypeDef:
    return {"AttributeName": name, "AttributeType": "S"}


def attribute_definitions() -> list[AttributeDefinitionTypeDef]:
    return [
        _string(PARTITION_KEY),
        _string(SORT_KEY),
        _string(FUNCTION_KEY),
        _string(STATUS_KEY),
        _string(START_KEY),
        _string(DUE_SHARD),
        {"AttributeName": DUE_MS, "AttributeType": "N"},
        _string(ACTIVE_SHARD),
        _string(CODE_KEY),
    ]


def _index(
    name: str, hash_key: str, range_key: str | None, *, listing: bool
) -> GlobalSecondaryIndexTypeDef:
    schema: list[KeySchemaElementTypeDef] = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key is not None:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    projection: ProjectionTypeDef = (
        {"ProjectionType": "INCLUDE", "NonKeyAttributes": [EXECUTION_NAME, FUNCTION_VERSION]}
        if listing
        else {"ProjectionType": "KEYS_ONLY"}
    )
    return {"IndexName": name, "KeySchema": schema, "Projection": projection}


def global_secondary_indexes() -> list[GlobalSecondaryIndexTypeDef]:
    return [
        _index(GSI_BY_FUNCTION, FUNCTION_KEY, START_KEY, listing=True),
        _index(GSI_BY_FUNCTION_STATUS, STATUS_KEY, START_KEY, listing=True),
        _index(GSI_DUE_TIMERS, DUE_SHARD, DUE_MS, listing=False),
        _index(GSI_ACTIVE_INVOCATIONS, ACTIVE_SHARD, None, listing=False),
        _index(GSI_BY_CODE, CODE_KEY, None, listing=False),
    ]


def create_tables(client: DynamoDBClient, table_name: str) -> None:
    """Create the table with its indexes and TTL; a table that exists gets the indexes
    it lacks (one created by an older Treadle), and is otherwise left as it is.

    Waits until the table is ACTIVE: on AWS creation takes seconds and writes before
    that fail with ResourceNotFoundException.
    """
    with translated(f"create table {table_name}"):
        try:
            client.create_table(
                TableName=table_name,
                KeySchema=[
                    {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
                ],
                AttributeDefinitions=attribute_definitions(),
                GlobalSecondaryIndexes=global_secondary_indexes(),
                BillingMode="PAY_PER_REQUEST",
            )
            log.info("created DynamoDB table %s", table_name)
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise
            log.debug("DynamoDB table %s exists already", table_name)
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        _add_missing_indexes(client, table_name)
        ttl = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )


def _add_missing_indexes(client: DynamoDBClient, table_name: str) -> None:
    # One index per UpdateTable (DynamoDB's rule); queries of a new index fail until it
    # is ACTIVE, which on AWS takes minutes on a big table: wait for it here.
    table = client.describe_table(TableName=table_name)["Table"]
    present = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
    for index in global_secondary_indexes():
        if index["IndexName"] in present:
            continue
        used = {k["AttributeName"] for k in index["KeySchema"]}
        client.update_table(
            TableName=table_name,
            AttributeDefinitions=[d for d in attribute_definitions() if d["AttributeName"] in used],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
        log.info("added index %s to DynamoDB table %s", index["IndexName"], table_name)
        while True:
            described = client.describe_table(TableName=table_name)["Table"]
            statuses = [
                i.get("IndexStatus")
                for i in described.get("GlobalSecondaryIndexes", [])
                if i["IndexName"] == index["IndexName"]
            ]
            if statuses == ["ACTIVE"]:
                break
            time.sleep(1)
