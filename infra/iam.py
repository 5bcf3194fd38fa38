"""Least-privilege IAM: the tenant execution role, the deployer policy, platform grants.

Every statement names its actions one by one (no `*`, not even `s3:GetObject*`) and its
resources by ARN. The CDK `grant_*` helpers are avoided on purpose: they add actions the
platform does not use (stream reads, object ACLs, tagging).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

from infra import names

LAMBDA_PRINCIPAL = "lambda.amazonaws.com"

# What the control plane does to tenant functions (section 2 of the architecture):
# create/update code, publish versions, aliases where cheap, invoke, delete.
# The two that can attach layers are granted apart, on the condition that the only layer
# is the platform's tenant layer (`lambda:Layer`, multivalued: ForAllValues).
DEPLOYER_LAYERED_ACTIONS: tuple[str, ...] = (
    "lambda:CreateFunction",
    "lambda:UpdateFunctionConfiguration",
)
DEPLOYER_LAMBDA_ACTIONS: tuple[str, ...] = (
    *DEPLOYER_LAYERED_ACTIONS,
    "lambda:UpdateFunctionCode",
    "lambda:PublishVersion",
    "lambda:GetFunction",
    "lambda:GetFunctionConfiguration",
    "lambda:ListVersionsByFunction",
    "lambda:InvokeFunction",
    "lambda:DeleteFunction",
    "lambda:CreateAlias",
    "lambda:UpdateAlias",
    "lambda:GetAlias",
    "lambda:DeleteAlias",
)
# Attaching a layer to a function needs read access to the layer version.
LAYER_USE_ACTIONS: tuple[str, ...] = ("lambda:GetLayerVersion",)
LOG_WRITE_ACTIONS: tuple[str, ...] = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
)
LOG_LIST_ACTIONS: tuple[str, ...] = ("logs:DescribeLogGroups",)
EVENT_PUT_ACTIONS: tuple[str, ...] = ("events:PutEvents",)
LOG_READ_ACTIONS: tuple[str, ...] = (
    "logs:DescribeLogStreams",
    "logs:FilterLogEvents",
    "logs:GetLogEvents",
)
# TransactWriteItems is authorised as the Put/Update/Delete/ConditionCheck it contains.
TABLE_ACTIONS: tuple[str, ...] = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
)
BUCKET_OBJECT_ACTIONS: tuple[str, ...] = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
)
# ListBucket turns a missing object into 404 instead of 403, which the adapter relies on.
BUCKET_ACTIONS: tuple[str, ...] = ("s3:ListBucket",)
GIT_PREFIX = "git/"  # where S3ObjectStore keeps repositories' objects
CODE_PREFIX = "code/"  # where S3CodeStore keeps code packages
# One Scan, once per table: the count of code references of function items written
# before counts existed (functions/treadle/adapters/aws/code_refs.py).
TABLE_SCAN_ACTIONS: tuple[str, ...] = ("dynamodb:Scan",)
QUEUE_SEND_ACTIONS: tuple[str, ...] = ("sqs:SendMessage",)
SECRET_READ_ACTIONS: tuple[str, ...] = ("secretsmanager:GetSecretValue",)


def tenant_function_arn(scope: IConstruct, stage: str, suffix: str = "") -> str:
    """ARN pattern of every tenant function of the stage: `...:function:treadle-<stage>-*`."""
    return Stack.of(scope).format_arn(
        service="lambda",
        resource="function",
        resource_name=f"{names.tenant_function_prefix(stage)}*{suffix}",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def tenant_log_group_arns(scope: IConstruct, stage: str) -> list[str]:
    """The log groups (and their streams) Lambda writes for tenant functions."""
    group = Stack.of(scope).format_arn(
        service="logs",
        resource="log-group",
        resource_name=f"/aws/lambda/{names.tenant_function_prefix(stage)}*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    return [group, f"{group}:log-stream:*"]


def lambda_role(scope: Construct, id: str, description: str) -> iam.Role:
    """A role for Lambda with no permission at all: every grant is explicit."""
    return iam.Role(
        scope,
        id,
        assumed_by=iam.ServicePrincipal(LAMBDA_PRINCIPAL),
        description=description,
    )


class TenantExecutionRole(Construct):
    """The only role tenant functions run with: their own logs, nothing else.

    No Lambda permission: tenant functions checkpoint against Treadle, not AWS, and sign
    with their tenant's sandbox key (the tenant layer's wrapper drops the role's STS
    credentials from the runtime's environment), which Treadle's API lets reach only
    that tenant's checkpoint API.
    """

    def __init__(self, scope: Construct, id: str, *, stage: str) -> None:
        super().__init__(scope, id)
        self.role = lambda_role(self, "Role", f"Treadle {stage}: tenant function execution role")
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="OwnLogs",
                actions=list(LOG_WRITE_ACTIONS),
                resources=tenant_log_group_arns(self, stage),
            )
        )


class DeployerPolicy(Construct):
    """Manage and invoke `treadle-<stage>-*` functions; pass no role but the tenant role,
    attach no layer but the tenant layer.

    With facets (infra/facets_iam.py): `configuration_conditions` bound what else the
    configuration may name (the VPC's subnets and security group), `statements` are what
    Lambda checks with the caller's permissions when given them.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: str,
        tenant_role: iam.IRole,
        tenant_layer_arn: str,
        configuration_conditions: Mapping[str, list[str]] | None = None,
        statements: Sequence[iam.PolicyStatement] = (),
    ) -> None:
        super().__init__(scope, id)
        layered = set(DEPLOYER_LAYERED_ACTIONS)
        configuration = {"lambda:Layer": [tenant_layer_arn], **(configuration_conditions or {})}
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description=f"Treadle {stage}: manage and invoke tenant functions",
            statements=[
                iam.PolicyStatement(
                    sid="TenantFunctions",
                    actions=[a for a in DEPLOYER_LAMBDA_ACTIONS if a not in layered],
                    resources=[tenant_function_arn(self, stage)],
                ),
                iam.PolicyStatement(
                    sid="TenantFunctionConfiguration",
                    actions=list(DEPLOYER_LAYERED_ACTIONS),
                    resources=[tenant_function_arn(self, stage)],
                    # Any layer in the request must be this one (none at all passes too);
                    # likewise any subnet or security group.
                    conditions={"ForAllValues:StringEquals": configuration},
                ),
                iam.PolicyStatement(
                    sid="TenantLayer",
                    actions=list(LAYER_USE_ACTIONS),
                    resources=[tenant_layer_arn],
                ),
                iam.PolicyStatement(
                    sid="PassTenantRoleToLambda",
                    actions=["iam:PassRole"],
                    resources=[tenant_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": LAMBDA_PRINCIPAL}},
                ),
                *statements,
            ],
        )

    def attach_to(self, roles: Sequence[iam.IRole]) -> None:
        for role in roles:
            role.add_managed_policy(self.policy)


def allow(role: iam.IRole, sid: str, actions: Sequence[str], resources: Sequence[str]) -> None:
    role.add_to_principal_policy(
        iam.PolicyStatement(sid=sid, actions=list(actions), resources=list(resources))
    )


def allow_table(role: iam.IRole, table: dynamodb.ITable) -> None:
    allow(role, "Table", TABLE_ACTIONS, [table.table_arn, f"{table.table_arn}/index/*"])


def allow_bucket(role: iam.IRole, bucket: s3.IBucket) -> None:
    allow(role, "ArtifactObjects", BUCKET_OBJECT_ACTIONS, [bucket.arn_for_objects("*")])
    allow(role, "ArtifactBucket", BUCKET_ACTIONS, [bucket.bucket_arn])


def allow_git_objects(role: iam.IRole, bucket: s3.IBucket) -> None:
    """The Git objects only (`git/`, `S3ObjectStore`'s prefix): what garbage collection
    repacks and deletes; not the code packages nor the payloads beside them."""
    allow(role, "GitObjects", BUCKET_OBJECT_ACTIONS, [bucket.arn_for_objects(f"{GIT_PREFIX}*")])
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="GitListing",
            actions=list(BUCKET_ACTIONS),
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{GIT_PREFIX}*"]}},
        )
    )


def allow_code_deletes(role: iam.IRole, bucket: s3.IBucket) -> None:
    """Deleting code packages (`code/`) no version references, nothing else."""
    allow(role, "CodePackages", ("s3:DeleteObject",), [bucket.arn_for_objects(f"{CODE_PREFIX}*")])


def allow_table_scan(role: iam.IRole, table: dynamodb.ITable) -> None:
    allow(role, "TableScan", TABLE_SCAN_ACTIONS, [table.table_arn])


def allow_send(role: iam.IRole, queue: sqs.IQueue) -> None:
    allow(role, "SendWork", QUEUE_SEND_ACTIONS, [queue.queue_arn])


def allow_token_key(role: iam.IRole, secret: secretsmanager.ISecret) -> None:
    allow(role, "TokenKey", SECRET_READ_ACTIONS, [secret.secret_arn])


def allow_admin_key(role: iam.IRole, secret: secretsmanager.ISecret) -> None:
    allow(role, "AdminKey", SECRET_READ_ACTIONS, [secret.secret_arn])


def allow_tenant_log_reads(role: iam.IRole, stage: str) -> None:
    allow(role, "TenantLogs", LOG_READ_ACTIONS, tenant_log_group_arns(role, stage))
    # DescribeLogGroups cannot be narrowed below every group of the region and account;
    # the adapter asks only for the caller's own prefix (adapters/aws/cloudwatch_logs.py).
    every_group = Stack.of(role).format_arn(
        service="logs",
        resource="log-group",
        resource_name="*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    allow(role, "ListLogGroups", LOG_LIST_ACTIONS, [every_group])
