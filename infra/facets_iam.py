"""The IAM of facets on AWS (infra/facets.py): who may attach to the VPC, mount what, and
make the tenants' access points.

Action names and condition keys are the Service Authorization Reference's (EFS, EC2,
Lambda) and the Lambda guide's "VPC" and "file system" pages:

- a Lambda in a VPC needs, on its execution role, what AWSLambdaVPCAccessExecutionRole
  grants for ENIs (granted inline here, without its `logs:*` on every group). Lambda
  makes those calls itself, outside the execution environment, so they carry no
  `lambda:SourceFunctionArn`; the same calls from code inside the function do, and are
  denied: tenant code could not use them even with the role's credentials;
- `ec2:DescribeNetworkInterfaces` and the `Describe*` Lambda makes with the caller's
  permissions to check a VpcConfig accept no resource but `*` (RESOURCE_STAR_ONLY);
- EFS tags on create: CreateAccessPoint with Tags is also authorised as TagResource on
  the new access point, with `elasticfilesystem:CreateAction`;
- `elasticfilesystem:Client*` are authorised on the file system with the access point in
  `elasticfilesystem:AccessPointArn`; the file system's policy (infra/facets.py) makes
  these identity grants the ones that count.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from infra.facets import CLIENT_ACTIONS, CLIENT_ROOT_ACTION, Facets
from treadle.adapters.aws.efs_facets import TENANT_TAG

# What Lambda does with the execution role to give a function its ENIs.
ENI_ACTIONS: tuple[str, ...] = (
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)
ENI_DESCRIBE_ACTIONS: tuple[str, ...] = ("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets")
# What Lambda checks with the caller's permissions when a VpcConfig is passed to it.
VPC_CONFIG_CHECK_ACTIONS: tuple[str, ...] = (
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
)
# ... and when FileSystemConfigs are.
MOUNT_TARGET_CHECK_ACTIONS: tuple[str, ...] = ("elasticfilesystem:DescribeMountTargets",)
# EC2 authorises these on `*` only: the one exception to "no Allow on `*`".
RESOURCE_STAR_ONLY: frozenset[str] = frozenset(ENI_DESCRIBE_ACTIONS + VPC_CONFIG_CHECK_ACTIONS)

CREATE_ACCESS_POINT = "elasticfilesystem:CreateAccessPoint"
TAG_RESOURCE = "elasticfilesystem:TagResource"
DESCRIBE_ACCESS_POINTS = "elasticfilesystem:DescribeAccessPoints"
ACCESS_POINT_KEY = "elasticfilesystem:AccessPointArn"
# The tags `EfsFacetStore` puts on a tenant's access point, and only those.
ACCESS_POINT_TAG_KEYS: tuple[str, ...] = ("Name", TENANT_TAG)


def access_point_arns(scope: IConstruct) -> str:
    """Every access point of the account and region (their ARNs name no file system)."""
    return Stack.of(scope).format_arn(
        service="elasticfilesystem",
        resource="access-point",
        resource_name="*",
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )


def _ec2_resources(scope: IConstruct) -> str:
    # The Lambda guide's form for DeleteNetworkInterface: any resource of the account
    # and region (the ENI's id is Lambda's to choose).
    return Stack.of(scope).format_arn(
        service="ec2", resource="*", resource_name="*", arn_format=ArnFormat.SLASH_RESOURCE_NAME
    )


def _through_root(facets: Facets) -> dict[str, dict[str, str]]:
    """Mounts through the platform's access point (the facets root)."""
    return {"StringEquals": {ACCESS_POINT_KEY: facets.platform_access_point.access_point_arn}}


def _tagged_by_the_store() -> dict[str, dict[str, object]]:
    return {
        "Null": {f"aws:RequestTag/{TENANT_TAG}": "false"},
        "ForAllValues:StringEquals": {"aws:TagKeys": list(ACCESS_POINT_TAG_KEYS)},
    }


def allow_vpc_attachment(role: iam.IRole) -> None:
    """What Lambda needs to attach a function running as `role` to the VPC."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="VpcNetworkInterfaces",
            actions=list(ENI_ACTIONS),
            resources=[_ec2_resources(role)],
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="VpcNetworkInterfacesDescribe", actions=list(ENI_DESCRIBE_ACTIONS), resources=["*"]
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="NoNetworkInterfacesFromFunctionCode",
            effect=iam.Effect.DENY,
            actions=list(ENI_ACTIONS + ENI_DESCRIBE_ACTIONS),
            resources=["*"],
            conditions={"Null": {"lambda:SourceFunctionArn": "false"}},
        )
    )


def allow_root_mount(role: iam.IRole, facets: Facets) -> None:
    """The API: in the VPC, with the facets root mounted as root."""
    allow_vpc_attachment(role)
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="FacetsRoot",
            actions=[*CLIENT_ACTIONS, CLIENT_ROOT_ACTION],
            resources=[facets.file_system.file_system_arn],
            conditions=_through_root(facets),
        )
    )


def allow_access_points(role: iam.IRole, facets: Facets) -> None:
    """The API and orchestrator (both deploy tenant functions): find and make tenants'
    access points on this file system, tagged as the store tags them."""
    fs = facets.file_system.file_system_arn
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="FacetsAccessPointLookup", actions=[DESCRIBE_ACCESS_POINTS], resources=[fs]
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="FacetsAccessPointCreate",
            actions=[CREATE_ACCESS_POINT],
            resources=[fs],
            conditions=_tagged_by_the_store(),
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="FacetsAccessPointTagOnCreate",
            actions=[TAG_RESOURCE],
            resources=[access_point_arns(role)],
            conditions={
                **_tagged_by_the_store(),
                "StringEquals": {"elasticfilesystem:CreateAction": "CreateAccessPoint"},
            },
        )
    )


def allow_tenant(role: iam.IRole, facets: Facets) -> None:
    """Tenant functions: attach to the VPC, mount an access point of this file system
    (the platform configures which one: its tenant's), never the platform's root one."""
    fs = facets.file_system.file_system_arn
    allow_vpc_attachment(role)
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="FacetsMountThroughAccessPoint",
            actions=list(CLIENT_ACTIONS),
            resources=[fs],
            # No access point, no key, no match: the whole file system is never mounted.
            conditions={"StringLike": {ACCESS_POINT_KEY: access_point_arns(role)}},
        )
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="FacetsNeverTheRoot",
            effect=iam.Effect.DENY,
            actions=[*CLIENT_ACTIONS, CLIENT_ROOT_ACTION],
            resources=[fs],
            conditions=_through_root(facets),
        )
    )


def deployer_conditions(facets: Facets) -> dict[str, list[str]]:
    """Added to CreateFunction / UpdateFunctionConfiguration's ForAllValues:StringEquals:
    a VpcConfig may name only the private subnets and the tenant group."""
    return {
        "lambda:SubnetIds": facets.subnet_ids,
        "lambda:SecurityGroupIds": [facets.tenant_sg.security_group_id],
    }


def deployer_statements(facets: Facets, scope: IConstruct) -> Sequence[iam.PolicyStatement]:
    """What Lambda checks with the deployer's permissions when it is given a VpcConfig and
    FileSystemConfigs."""
    return [
        iam.PolicyStatement(
            sid="TenantFunctionVpcCheck", actions=list(VPC_CONFIG_CHECK_ACTIONS), resources=["*"]
        ),
        iam.PolicyStatement(
            sid="TenantFunctionMountCheck",
            actions=list(MOUNT_TARGET_CHECK_ACTIONS),
            resources=[facets.file_system.file_system_arn, access_point_arns(scope)],
        ),
    ]
