"""The `qa` stage's stack as the tests see it: names, ARN patterns, lookups."""

from __future__ import annotations

from cfn_helpers import Json, function_by_name, one, role_of, statements_of_role

from infra import names

STAGE = "qa"
ARN_PREFIX = "arn:${AWS::Partition}:{service}:${AWS::Region}:${AWS::AccountId}:"
TENANT_FUNCTIONS = ARN_PREFIX.replace("{service}", "lambda") + "function:"
TENANT_LOG_GROUPS = (
    ARN_PREFIX.replace("{service}", "logs") + f"log-group:/aws/lambda/treadle-{STAGE}-*"
)
TENANT_PATTERN = f"{TENANT_FUNCTIONS}treadle-{STAGE}-*"
API = names.platform_function_name(STAGE, "api")
ORCHESTRATOR = names.platform_function_name(STAGE, "orchestrator")
SWEEP = names.platform_function_name(STAGE, "sweep")
# X-Ray has no resource-level permissions: these two are granted on "*", their only form.
XRAY_WRITE = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def role_statements(template: Json, function_name: str) -> list[Json]:
    _, function = function_by_name(template, function_name)
    return statements_of_role(template, role_of(function))


def tenant_layer_id(template: Json) -> str:
    layer_id, _ = one(
        template,
        "AWS::Lambda::LayerVersion",
        Description=f"Treadle {STAGE}: durable SDK and credential wrapper for tenant functions",
    )
    return layer_id


def admin_secret_id(template: Json) -> str:
    secret_id, _ = one(
        template,
        "AWS::SecretsManager::Secret",
        Description=f"Treadle {STAGE}: platform admin access key pair (JSON)",
    )
    return secret_id
