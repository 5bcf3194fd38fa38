"""Names shared by the CDK app, its tests and (by copy) the platform code.

Free of aws_cdk imports: the constants describe the deployed shape (names, environment
variables, outputs). The environment variable names are meant to be mirrored by the
platform's Settings model (those of facets are imported from it); the table's shape is
imported from the DynamoDB adapter.
"""

from __future__ import annotations

import re
from typing import Final

from treadle.adapters.aws import tables
from treadle.settings import ENV_EVENT_BUS as ENV_EVENT_BUS
from treadle.settings import ENV_FACETS_FILE_SYSTEM_ID as ENV_FACETS_FILE_SYSTEM_ID
from treadle.settings import ENV_FACETS_MOUNT_PATH as ENV_FACETS_MOUNT_PATH
from treadle.settings import ENV_TENANT_SECURITY_GROUP_IDS as ENV_TENANT_SECURITY_GROUP_IDS
from treadle.settings import ENV_TENANT_SUBNET_IDS as ENV_TENANT_SUBNET_IDS

# --- stage and naming -------------------------------------------------------------

DEFAULT_STAGE: Final = "dev"
CONTEXT_STAGE: Final = "stage"
CONTEXT_LAYER_DIR: Final = "layerDir"
DEFAULT_LAYER_DIR: Final = "build/lambda-layer"
CONTEXT_TENANT_LAYER_DIR: Final = "tenantLayerDir"
DEFAULT_TENANT_LAYER_DIR: Final = "build/tenant-layer"
# `-c treadle:facets=true`: the VPC, NAT gateway and EFS file system of facets on AWS
# (infra/facets.py). Off by default: the NAT gateway alone costs about $33 a month.
CONTEXT_FACETS: Final = "treadle:facets"

# Lowercase letters and digits only: a hyphen in a stage would let the tenant function
# pattern of one stage ("treadle-dev-*") match the functions of another ("treadle-dev-x-...").
STAGE_PATTERN: Final = re.compile(r"^[a-z][a-z0-9]{0,11}$")

# Tenant functions are created at runtime as `treadle-<stage>-<tenant>-<name>`.
TENANT_FUNCTION_PREFIX: Final = "treadle"
# Platform functions must never match the tenant pattern, or the deployer permission
# (create/update/invoke `treadle-<stage>-*`) would let the API replace the platform's own
# code: they live under a different prefix.
PLATFORM_FUNCTION_PREFIX: Final = "treadlectl"


def validate_stage(stage: str) -> str:
    if not STAGE_PATTERN.fullmatch(stage):
        raise ValueError(
            f"invalid stage {stage!r}: use 1-12 lowercase letters or digits, starting with a letter"
        )
    return stage


def stack_name(stage: str) -> str:
    return f"Treadle-{stage}"


def tenant_function_prefix(stage: str) -> str:
    """Prefix of every tenant function name of a stage (ends with a hyphen)."""
    return f"{TENANT_FUNCTION_PREFIX}-{stage}-"


def platform_function_name(stage: str, role: str) -> str:
    return f"{PLATFORM_FUNCTION_PREFIX}-{stage}-{role}"


# --- platform Lambda handlers (modules under functions/) -----------------------------

API_HANDLER: Final = "treadle.entrypoints.api.handler"
ORCHESTRATOR_HANDLER: Final = "treadle.entrypoints.orchestrator.handler"
SWEEP_HANDLER: Final = "treadle.entrypoints.sweep.handler"

# --- DynamoDB single table ---------------------------------------------------------
# The DynamoDB adapter owns the table's shape (functions/treadle/adapters/aws/tables.py):
# the stack declares exactly its keys, indexes and TTL attribute, so they cannot drift.

TABLE_PARTITION_KEY: Final = tables.PARTITION_KEY
TABLE_SORT_KEY: Final = tables.SORT_KEY
TABLE_TTL_ATTRIBUTE: Final = tables.TTL_ATTRIBUTE
GSI_BY_FUNCTION: Final = tables.GSI_BY_FUNCTION
GSI_BY_FUNCTION_STATUS: Final = tables.GSI_BY_FUNCTION_STATUS
GSI_DUE_TIMERS: Final = tables.GSI_DUE_TIMERS
GSI_ACTIVE_INVOCATIONS: Final = tables.GSI_ACTIVE_INVOCATIONS

# --- environment variables the platform Lambdas receive ---------------------------

ENV_STAGE: Final = "TREADLE_STAGE"
ENV_REGION: Final = "TREADLE_REGION"
ENV_TABLE: Final = "TREADLE_TABLE"
ENV_BUCKET: Final = "TREADLE_BUCKET"
ENV_QUEUE_URL: Final = "TREADLE_QUEUE_URL"
ENV_TENANT_ROLE_ARN: Final = "TREADLE_TENANT_ROLE_ARN"
ENV_TENANT_FUNCTION_PREFIX: Final = "TREADLE_TENANT_FUNCTION_PREFIX"
ENV_TOKEN_SECRET_ARN: Final = "TREADLE_TOKEN_SECRET_ARN"
ENV_ADMIN_SECRET_ARN: Final = "TREADLE_ADMIN_SECRET_ARN"
ENV_TENANT_LAYER_ARN: Final = "TREADLE_TENANT_LAYER_ARN"
ENV_API_URL: Final = "TREADLE_API_URL"
ENV_SYNC_INVOKE_WAIT: Final = "TREADLE_SYNC_INVOKE_WAIT_SECONDS"
ENV_DATA_DIR: Final = "TREADLE_DATA_DIR"
ENV_POWERTOOLS_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
ENV_POWERTOOLS_LOG_LEVEL: Final = "POWERTOOLS_LOG_LEVEL"

PLATFORM_ENV_VARS: Final = (
    ENV_STAGE,
    ENV_REGION,
    ENV_TABLE,
    ENV_BUCKET,
    ENV_QUEUE_URL,
    ENV_TENANT_ROLE_ARN,
    ENV_TENANT_FUNCTION_PREFIX,
    ENV_TOKEN_SECRET_ARN,
    ENV_TENANT_LAYER_ARN,
    ENV_API_URL,
    ENV_DATA_DIR,
    ENV_POWERTOOLS_SERVICE_NAME,
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_LOG_LEVEL,
)

# Only the API function serves /v1/tenants, so only it gets (and may read) the admin secret;
# only it answers synchronous invokes from behind API Gateway, so only it caps their wait.
API_ONLY_ENV_VARS: Final = (ENV_ADMIN_SECRET_ARN, ENV_SYNC_INVOKE_WAIT)
# The sweep relays status changes to EventBridge (docs/notifications.md).
SWEEP_ONLY_ENV_VARS: Final = (ENV_EVENT_BUS,)

# API Gateway gives up on an integration after ~29-30 s (a 504, which SDK clients retry:
# each retry of an unnamed durable invoke would start another execution). The API answers
# a synchronous invoke still running after this long with Treadle.SyncInvokeTimeout.
API_SYNC_INVOKE_WAIT_S: Final = 25

POWERTOOLS_SERVICE_NAME: Final = "treadle"
POWERTOOLS_METRICS_NAMESPACE: Final = "Treadle"
# Lambda's only writable directory.
LAMBDA_DATA_DIR: Final = "/tmp/treadle"

# Facets on EFS (infra/facets.py): the platform's own copy of these names is its Settings
# model's (imported above), so the stack and the parser cannot disagree.
FACETS_ENV_VARS: Final = (
    ENV_FACETS_FILE_SYSTEM_ID,
    ENV_FACETS_MOUNT_PATH,
    ENV_TENANT_SUBNET_IDS,
    ENV_TENANT_SECURITY_GROUP_IDS,
)
# Where the API mounts the facets root, and tenant Lambdas their own
# directory (Lambda wants /mnt/<name>).
FACETS_MOUNT_PATH: Final = "/mnt/facets"

# --- outputs --------------------------------------------------------------------------

OUTPUT_API_URL: Final = "ApiUrl"
OUTPUT_TABLE_NAME: Final = "TableName"
OUTPUT_BUCKET_NAME: Final = "BucketName"
OUTPUT_QUEUE_URL: Final = "QueueUrl"
OUTPUT_TENANT_ROLE_ARN: Final = "TenantRoleArn"
OUTPUT_TENANT_LAYER_ARN: Final = "TenantLayerArn"
# `aws secretsmanager get-secret-value --secret-id <this>` gives the admin key pair.
OUTPUT_ADMIN_SECRET_ARN: Final = "AdminSecretArn"
OUTPUT_FACETS_FILE_SYSTEM_ID: Final = "FacetsFileSystemId"


def admin_key_id(stage: str) -> str:
    """The admin's access key id: fixed per stage (a key id is not secret; the secret
    beside it is generated by Secrets Manager). 16+ characters of [A-Z0-9], as the
    platform's settings require, and never of the `AKIA` form tenant and sandbox keys take.
    """
    return f"TREADLEADMIN{validate_stage(stage).upper()}KEY"


def context_flag(key: str, value: object) -> bool:
    """A boolean context value: `true`/`false` from the CLI (`-c key=true`, a string) or
    cdk.json (a JSON boolean); unset is false. Anything else is refused, not guessed."""
    if value is None or value is False or value is True:
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"context {key!r} must be true or false, not {value!r}")
