"""Facets on AWS (docs/aws.md, "Facets on AWS"): the network and the file system.

Built only with `-c treadle:facets=true` (names.CONTEXT_FACETS): the NAT gateway costs
about $33 a month whether or not a facet exists. What it makes:

- a VPC over two AZs: a private subnet in each (the platform's and tenants' Lambdas, the
  EFS mount targets) routed to the internet through ONE NAT gateway in a public subnet
  (API Gateway has no private endpoint for HTTP APIs, so tenant Lambdas reach the
  checkpoint API through it), and gateway endpoints for S3 and DynamoDB (free, and keep
  the platform's table and bucket traffic off the NAT's per-GB charge);
- three security groups: the platform functions', the tenant functions', and the file
  system's, which accepts NFS (2049) from those two and nothing else;
- the EFS file system (encrypted, elastic throughput, retained like the table and the
  bucket: facets are tenant data that must outlive a mistaken `cdk destroy`), a mount
  target in each private subnet, and the platform's access point, which the API function
  mounts: the facets root (`/facets`, `efs_facets.FS_ROOT`) as uid 0, because the
  platform makes every tenant's directory, chowns it to the tenant and measures, exports
  and deletes any facet.

Tenant access points are not here: the platform makes one per tenant at runtime
(`adapters/aws/efs_facets.py`). The IAM that goes with all this: infra/facets_iam.py.
"""

from __future__ import annotations

from aws_cdk import Fn, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import names
from treadle.adapters.aws.efs_facets import FS_ROOT

VPC_CIDR = "10.64.0.0/16"
AZ_COUNT = 2
# The public subnets hold the NAT gateway only; Lambda ENIs and mount targets take
# addresses in the private ones (Hyperplane ENIs are shared per subnet and group).
PUBLIC_CIDR_MASK = 26
PRIVATE_CIDR_MASK = 20
NAT_GATEWAYS = 1
NFS_PORT = 2049
HTTPS_PORT = 443
# The platform's access point: root and root's group, and a root directory that tenants'
# uids may traverse but not list (each tenant's own access point starts below it).
PLATFORM_UID = "0"
FACETS_ROOT_PERMISSIONS = "711"
# What an NFS client is authorised for (on the file system, by the access point it uses).
CLIENT_ACTIONS: tuple[str, ...] = ("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite")
CLIENT_ROOT_ACTION = "elasticfilesystem:ClientRootAccess"


class Facets(Construct):
    """The VPC, its NAT gateway, the security groups and the facets file system."""

    def __init__(self, scope: Construct, id: str, *, stage: str) -> None:
        super().__init__(scope, id)
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=AZ_COUNT,
            nat_gateways=NAT_GATEWAYS,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=PUBLIC_CIDR_MASK
                ),
                ec2.SubnetConfiguration(
                    name="Private",
                    subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                    cidr_mask=PRIVATE_CIDR_MASK,
                ),
            ],
            # Restricting the default group takes a custom-resource Lambda (with an AWS
            # managed policy); nothing here uses that group: every ENI has its own.
            restrict_default_security_group=False,
            # Only the private subnets' traffic goes to S3 and DynamoDB.
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.subnets]
                ),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=[self.subnets]
                ),
            },
        )

        # AWS APIs (the platform) and Treadle's API (tenants) are HTTPS; NFS to the file
        # system is added by `allow_default_port_from` below. Nothing else leaves.
        self.platform_sg = self._group("Platform", f"Treadle {stage}: platform functions")
        self.tenant_sg = self._group("Tenant", f"Treadle {stage}: tenant functions")
        self.efs_sg = ec2.SecurityGroup(
            self,
            "FileSystemGroup",
            vpc=self.vpc,
            description=f"Treadle {stage}: facets file system, NFS from the functions only",
            allow_all_outbound=False,
        )

        self.file_system = efs.FileSystem(
            self,
            "FileSystem",
            vpc=self.vpc,
            vpc_subnets=self.subnets,
            security_group=self.efs_sg,
            file_system_name=f"treadle-{stage}-facets",
            encrypted=True,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            # Without a file system policy EFS lets in any client that reaches a mount
            # target; this one trusts this account's principals, through a mount target,
            # so the roles' own grants (facets_iam) decide who mounts what. CDK's own
            # "no anonymous access" policy is off: it grants write and root to "*".
            file_system_policy=_delegate_to_iam(),
            allow_anonymous_access=True,
            enable_automatic_backups=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for group in (self.platform_sg, self.tenant_sg):
            self.file_system.connections.allow_default_port_from(group, "NFS")

        self.platform_access_point = efs.AccessPoint(
            self,
            "PlatformAccessPoint",
            file_system=self.file_system,
            path=FS_ROOT,
            posix_user=efs.PosixUser(uid=PLATFORM_UID, gid=PLATFORM_UID),
            create_acl=efs.Acl(
                owner_uid=PLATFORM_UID,
                owner_gid=PLATFORM_UID,
                permissions=FACETS_ROOT_PERMISSIONS,
            ),
        )

    def _group(self, id: str, description: str) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self, f"{id}Group", vpc=self.vpc, description=description, allow_all_outbound=False
        )
        group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(HTTPS_PORT), "HTTPS")
        return group

    @property
    def subnet_ids(self) -> list[str]:
        return self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnet_ids

    def environment(self) -> dict[str, str]:
        """What the API and the orchestrator are told (treadle.settings parses it: the ids
        comma-separated)."""
        return {
            names.ENV_FACETS_FILE_SYSTEM_ID: self.file_system.file_system_id,
            names.ENV_FACETS_MOUNT_PATH: names.FACETS_MOUNT_PATH,
            names.ENV_TENANT_SUBNET_IDS: Fn.join(",", self.subnet_ids),
            names.ENV_TENANT_SECURITY_GROUP_IDS: self.tenant_sg.security_group_id,
        }

    def mount(self) -> lambda_.FileSystem:
        """The facets root, as the platform's functions mount it: after the mount targets
        exist, with no policy of CDK's (`from_efs_access_point` would add ClientMount on
        `*` and ClientWrite on the whole file system; facets_iam grants them scoped)."""
        return lambda_.FileSystem(
            arn=self.platform_access_point.access_point_arn,
            local_mount_path=names.FACETS_MOUNT_PATH,
            connections=self.file_system.connections,
            dependency=[self.file_system.mount_targets_available],
            policies=[],
        )


def _delegate_to_iam() -> iam.PolicyDocument:
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="ThisAccountThroughMountTargets",
                principals=[iam.AccountRootPrincipal()],
                actions=[*CLIENT_ACTIONS, CLIENT_ROOT_ACTION],
                conditions={"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
            )
        ]
    )
