"""Facets on AWS in the stack (infra/facets.py, infra/facets_iam.py): off by default; on,
the VPC with one NAT gateway, the encrypted EFS file system reachable over NFS from the
platform's and tenants' groups only, the API and orchestrator mounting its root, and IAM
scoped to this file system. The syntheses are conftest.py's (`template`: default,
`facets_template`: `facets=True`)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, assertions
from cfn_helpers import (
    Json,
    actions,
    as_list,
    function_by_name,
    one,
    policy_documents,
    ref_id,
    resources,
    role_of,
    statements_of_role,
)
from qa_stack import API, ORCHESTRATOR, STAGE, SWEEP, XRAY_WRITE, role_statements

from infra import app as infra_app
from infra import cfn_lint, facets_iam, names
from treadle.adapters.aws.efs_facets import FS_ROOT, TENANT_TAG
from treadle.settings import Settings

pytestmark = pytest.mark.xdist_group("infra")

FACETS_TYPES = (
    "AWS::EC2::VPC",
    "AWS::EC2::Subnet",
    "AWS::EC2::NatGateway",
    "AWS::EC2::EIP",
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::VPCEndpoint",
    "AWS::EFS::FileSystem",
    "AWS::EFS::MountTarget",
    "AWS::EFS::AccessPoint",
)
ACCOUNT_ACCESS_POINTS = (
    "arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:access-point/*"
)


# --- the template, read ----------------------------------------------------------------


def _file_system(t: Json) -> tuple[str, Json]:
    return one(t, "AWS::EFS::FileSystem")


def _fs_arn(t: Json) -> str:
    return f"${{{_file_system(t)[0]}.Arn}}"


def _group(t: Json, description: str) -> str:
    description = f"Treadle {STAGE}: {description}"
    group_id, _ = one(t, "AWS::EC2::SecurityGroup", GroupDescription=description)
    return group_id


def _groups(t: Json) -> tuple[str, str, str]:
    """(platform, tenant, file system) security group ids."""
    return (
        _group(t, "platform functions"),
        _group(t, "tenant functions"),
        _group(t, "facets file system, NFS from the functions only"),
    )


def _private_subnets(t: Json) -> list[str]:
    return sorted(
        f"${{{k}}}"
        for k, s in resources(t, "AWS::EC2::Subnet").items()
        if s["Properties"]["MapPublicIpOnLaunch"] is False
    )


def _root_access_point(t: Json) -> str:
    ap_id, _ = one(t, "AWS::EFS::AccessPoint")
    return (
        "arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}"
        f":access-point/${{{ap_id}}}"
    )


def _by_sid(statements: list[Json]) -> dict[str, Json]:
    return {s["Sid"]: s for s in statements if "Sid" in s}


def _tenant_role(t: Json) -> str:
    role_id, _ = one(
        t, "AWS::IAM::Role", Description=f"Treadle {STAGE}: tenant function execution role"
    )
    return role_id


# --- off by default ---------------------------------------------------------------------


def test_without_the_flag_nothing_of_facets_exists(template: Json) -> None:
    for type_ in FACETS_TYPES:
        assert resources(template, type_) == {}, type_
    for function in resources(template, "AWS::Lambda::Function").values():
        props = function["Properties"]
        assert "VpcConfig" not in props and "FileSystemConfigs" not in props
        assert not set(props["Environment"]["Variables"]) & set(names.FACETS_ENV_VARS)
    for where, document in policy_documents(template):
        for statement in document["Statement"]:
            for action in as_list(statement["Action"]):
                assert not action.startswith(("ec2:", "elasticfilesystem:")), where
    assert names.OUTPUT_FACETS_FILE_SYSTEM_ID not in template["Outputs"]


def test_the_context_flag_is_true_or_false_and_nothing_else() -> None:
    assert names.context_flag("k", None) is False
    assert names.context_flag("k", False) is False
    assert names.context_flag("k", "false") is False
    assert names.context_flag("k", True) is True
    assert names.context_flag("k", " TRUE ") is True
    for bad in ("yes", "1", 1, ""):
        with pytest.raises(ValueError, match="'k' must be true or false"):
            names.context_flag("k", bad)


def test_the_app_builds_facets_when_the_context_says_so() -> None:
    context = {names.CONTEXT_STAGE: "ctx", names.CONTEXT_FACETS: "true"}
    app = infra_app.build_app(App(context=context))
    stack: Any = app.node.find_child(names.stack_name("ctx"))
    template = assertions.Template.from_stack(stack)
    template.resource_count_is("AWS::EFS::FileSystem", 1)
    template.resource_count_is("AWS::EC2::NatGateway", 1)


# --- network --------------------------------------------------------------------------


def test_two_azs_private_subnets_egress_through_one_nat_gateway(facets_template: Json) -> None:
    t = facets_template
    (nat_id, nat) = one(t, "AWS::EC2::NatGateway")
    subnets = resources(t, "AWS::EC2::Subnet")
    public = {k for k, s in subnets.items() if s["Properties"]["MapPublicIpOnLaunch"]}
    private = set(subnets) - public
    assert len(public) == len(private) == 2
    assert ref_id(nat["Properties"]["SubnetId"]) in public
    for group in (public, private):
        azs = [subnets[k]["Properties"]["AvailabilityZone"] for k in group]
        assert sorted(az["Fn::Select"][0] for az in azs) == [0, 1]
    # Every private subnet's default route is that one NAT gateway.
    tables = {
        ref_id(a["Properties"]["RouteTableId"]): ref_id(a["Properties"]["SubnetId"])
        for a in resources(t, "AWS::EC2::SubnetRouteTableAssociation").values()
    }
    private_defaults = [
        r["Properties"]
        for r in resources(t, "AWS::EC2::Route").values()
        if tables[ref_id(r["Properties"]["RouteTableId"])] in private
    ]
    assert len(private_defaults) == 2
    for route in private_defaults:
        assert route["DestinationCidrBlock"] == "0.0.0.0/0"
        assert route["NatGatewayId"] == f"${{{nat_id}}}"
    endpoints = resources(t, "AWS::EC2::VPCEndpoint").values()
    assert {e["Properties"]["VpcEndpointType"] for e in endpoints} == {"Gateway"}
    private_tables = sorted(k for k, subnet in tables.items() if subnet in private)
    for endpoint in endpoints:
        routed = sorted(ref_id(r) for r in endpoint["Properties"]["RouteTableIds"])
        assert routed == private_tables
    assert sorted(e["Properties"]["ServiceName"].rsplit(".", 1)[1] for e in endpoints) == [
        "dynamodb",
        "s3",
    ]


def test_nfs_reaches_the_file_system_from_exactly_the_two_function_groups(
    facets_template: Json,
) -> None:
    t = facets_template
    platform, tenant, fs_group = _groups(t)
    group = t["Resources"][fs_group]["Properties"]
    assert "SecurityGroupIngress" not in group  # no CIDR, no inline rule
    ingress = [
        r["Properties"]
        for r in resources(t, "AWS::EC2::SecurityGroupIngress").values()
        if ref_id(r["Properties"]["GroupId"]) == fs_group
    ]
    assert sorted(
        (i["IpProtocol"], i["FromPort"], i["ToPort"], ref_id(i["SourceSecurityGroupId"]))
        for i in ingress
    ) == sorted([("tcp", 2049, 2049, platform), ("tcp", 2049, 2049, tenant)])
    # The file system starts no connection (CDK's "disallow all" placeholder only).
    assert [e["CidrIp"] for e in group["SecurityGroupEgress"]] == ["255.255.255.255/32"]


def test_function_groups_let_out_https_and_nfs_to_the_file_system_only(
    facets_template: Json,
) -> None:
    t = facets_template
    platform, tenant, fs_group = _groups(t)
    for group_id in (platform, tenant):
        group = t["Resources"][group_id]["Properties"]
        assert "SecurityGroupIngress" not in group
        assert group["SecurityGroupEgress"] == [
            {
                "CidrIp": "0.0.0.0/0",
                "Description": "HTTPS",
                "FromPort": 443,
                "IpProtocol": "tcp",
                "ToPort": 443,
            }
        ]
        egress = [
            r["Properties"]
            for r in resources(t, "AWS::EC2::SecurityGroupEgress").values()
            if ref_id(r["Properties"]["GroupId"]) == group_id
        ]
        assert [(e["FromPort"], ref_id(e["DestinationSecurityGroupId"])) for e in egress] == [
            (2049, fs_group)
        ]
        assert not [
            r
            for r in resources(t, "AWS::EC2::SecurityGroupIngress").values()
            if ref_id(r["Properties"]["GroupId"]) == group_id
        ]


# --- file system ----------------------------------------------------------------------


def test_file_system_is_encrypted_elastic_retained_and_trusts_only_iam(
    facets_template: Json,
) -> None:
    t = facets_template
    fs_id, fs = _file_system(t)
    props = fs["Properties"]
    assert props["Encrypted"] is True
    assert props["ThroughputMode"] == "elastic"
    assert props["PerformanceMode"] == "generalPurpose"
    assert props["BackupPolicy"] == {"Status": "ENABLED"}
    assert fs["DeletionPolicy"] == fs["UpdateReplacePolicy"] == "Retain"
    # The policy names this account (whose roles' grants then decide), never "*".
    (statement,) = props["FileSystemPolicy"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    assert statement["Condition"] == {"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}}
    _, _, fs_group = _groups(t)
    targets = [m["Properties"] for m in resources(t, "AWS::EFS::MountTarget").values()]
    assert sorted(m["SubnetId"] for m in targets) == _private_subnets(t)
    for target in targets:
        assert ref_id(target["FileSystemId"]) == fs_id
        assert [ref_id(g) for g in target["SecurityGroups"]] == [fs_group]
    assert t["Outputs"][names.OUTPUT_FACETS_FILE_SYSTEM_ID]["Value"] == f"${{{fs_id}}}"


def test_platform_access_point_is_the_facets_root_as_root(facets_template: Json) -> None:
    _, ap = one(facets_template, "AWS::EFS::AccessPoint")
    props = ap["Properties"]
    assert ref_id(props["FileSystemId"]) == _file_system(facets_template)[0]
    assert props["RootDirectory"] == {
        "Path": FS_ROOT,
        "CreationInfo": {"OwnerUid": "0", "OwnerGid": "0", "Permissions": "711"},
    }
    assert props["PosixUser"] == {"Uid": "0", "Gid": "0"}
    # Not a tenant's: the store finds tenants' access points by this tag.
    assert TENANT_TAG not in {tag["Key"] for tag in props.get("AccessPointTags", [])}


# --- functions --------------------------------------------------------------------------


def test_the_api_mounts_the_facets_root_in_the_vpc(facets_template: Json) -> None:
    t = facets_template
    platform, _, _ = _groups(t)
    _, function = function_by_name(t, API)
    props = function["Properties"]
    assert sorted(props["VpcConfig"]["SubnetIds"]) == _private_subnets(t)
    assert [ref_id(g) for g in props["VpcConfig"]["SecurityGroupIds"]] == [platform]
    assert props["FileSystemConfigs"] == [
        {"Arn": _root_access_point(t), "LocalMountPath": names.FACETS_MOUNT_PATH}
    ]
    # Created once the mount targets are: Lambda checks them.
    targets = set(resources(t, "AWS::EFS::MountTarget"))
    assert targets <= set(function["DependsOn"])


@pytest.mark.parametrize("name", [API, ORCHESTRATOR])
def test_api_and_orchestrator_are_told_the_file_system_and_the_tenants_network(
    facets_template: Json, name: str
) -> None:
    t = facets_template
    _, tenant, _ = _groups(t)
    _, function = function_by_name(t, name)
    env = function["Properties"]["Environment"]["Variables"]
    assert env[names.ENV_FACETS_FILE_SYSTEM_ID] == f"${{{_file_system(t)[0]}}}"
    assert env[names.ENV_FACETS_MOUNT_PATH] == names.FACETS_MOUNT_PATH
    assert sorted(env[names.ENV_TENANT_SUBNET_IDS].split(",")) == _private_subnets(t)
    assert env[names.ENV_TENANT_SECURITY_GROUP_IDS] == f"${{{tenant}.GroupId}}"

    # Resolved as CloudFormation would, the platform's settings accept them.
    ids = {f"${{{_file_system(t)[0]}}}": "fs-0123456789abcdef0", f"${{{tenant}.GroupId}}": "sg-1"}
    ids |= {subnet: f"subnet-{i}" for i, subnet in enumerate(_private_subnets(t))}
    values = {
        key: ",".join(ids.get(part, part) for part in env[var].split(","))
        for key, var in (
            ("facets_file_system_id", names.ENV_FACETS_FILE_SYSTEM_ID),
            ("facets_mount_path", names.ENV_FACETS_MOUNT_PATH),
            ("tenant_subnet_ids", names.ENV_TENANT_SUBNET_IDS),
            ("tenant_security_group_ids", names.ENV_TENANT_SECURITY_GROUP_IDS),
        )
    }
    settings = Settings.model_validate(values)
    assert settings.tenant_subnet_ids == ("subnet-0", "subnet-1")
    assert settings.tenant_security_group_ids == ("sg-1",)


def test_orchestrator_and_sweep_stay_out_of_the_vpc(facets_template: Json) -> None:
    # The orchestrator's synchronous invokes outlast a NAT gateway's 350 s idle timeout.
    for name in (ORCHESTRATOR, SWEEP):
        _, function = function_by_name(facets_template, name)
        props = function["Properties"]
        assert "VpcConfig" not in props and "FileSystemConfigs" not in props
        granted = actions(role_statements(facets_template, name))
        assert not granted & set(facets_iam.ENI_ACTIONS)
        assert not any(a.startswith("elasticfilesystem:Client") for a in granted)
    _, sweep = function_by_name(facets_template, SWEEP)
    assert not set(sweep["Properties"]["Environment"]["Variables"]) & set(names.FACETS_ENV_VARS)
    sweep_actions = actions(role_statements(facets_template, SWEEP))
    assert not any(a.startswith(("ec2:", "elasticfilesystem:")) for a in sweep_actions)


# --- IAM ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [API, ORCHESTRATOR])
def test_platform_roles_make_tagged_access_points_of_this_file_system_the_api_mounts_it(
    facets_template: Json, name: str
) -> None:
    t = facets_template
    fs = _fs_arn(t)
    statements = role_statements(t, name)
    efs_statements = [s for s in statements if "elasticfilesystem:" in str(s["Action"])]
    sids = _by_sid(efs_statements)
    # Every EFS grant is one of these (none of CDK's own, unscoped); the mount check is
    # the deployer's (Lambda checks mount targets with the caller's permissions).
    expected = {
        "FacetsAccessPointLookup",
        "FacetsAccessPointCreate",
        "FacetsAccessPointTagOnCreate",
        "TenantFunctionMountCheck",
    }
    assert set(sids) == (expected | {"FacetsRoot"} if name == API else expected)
    assert len(efs_statements) == len(sids)
    if name == API:
        _assert_root_mount(t, sids["FacetsRoot"])
        _assert_vpc_attachment(statements)
    else:  # outside the VPC: no ENI
        assert not actions(statements) & set(facets_iam.ENI_ACTIONS)
    lookup = sids["FacetsAccessPointLookup"]
    assert as_list(lookup["Action"]) == ["elasticfilesystem:DescribeAccessPoints"]
    assert as_list(lookup["Resource"]) == [fs]
    tagged = {
        "Null": {f"aws:RequestTag/{TENANT_TAG}": "false"},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["Name", TENANT_TAG]},
    }
    create = sids["FacetsAccessPointCreate"]
    assert as_list(create["Action"]) == ["elasticfilesystem:CreateAccessPoint"]
    assert as_list(create["Resource"]) == [fs]
    assert create["Condition"] == tagged
    tag = sids["FacetsAccessPointTagOnCreate"]
    assert as_list(tag["Action"]) == ["elasticfilesystem:TagResource"]
    assert as_list(tag["Resource"]) == [ACCOUNT_ACCESS_POINTS]
    assert tag["Condition"] == {
        **tagged,
        "StringEquals": {"elasticfilesystem:CreateAction": "CreateAccessPoint"},
    }
    # Nothing deletes an access point.
    assert "elasticfilesystem:DeleteAccessPoint" not in actions(statements)


def _assert_root_mount(t: Json, root: Json) -> None:
    assert set(as_list(root["Action"])) == {
        "elasticfilesystem:ClientMount",
        "elasticfilesystem:ClientWrite",
        "elasticfilesystem:ClientRootAccess",
    }
    assert as_list(root["Resource"]) == [_fs_arn(t)]
    assert root["Condition"] == {
        "StringEquals": {"elasticfilesystem:AccessPointArn": _root_access_point(t)}
    }


def _assert_vpc_attachment(statements: list[Json]) -> None:
    sids = _by_sid(statements)
    enis = sids["VpcNetworkInterfaces"]
    assert set(as_list(enis["Action"])) == set(facets_iam.ENI_ACTIONS)
    assert as_list(enis["Resource"]) == [
        "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:*/*"
    ]
    describe = sids["VpcNetworkInterfacesDescribe"]
    assert set(as_list(describe["Action"])) == set(facets_iam.ENI_DESCRIBE_ACTIONS)
    # Code inside a function (its calls carry its ARN) may use none of it.
    deny = sids["NoNetworkInterfacesFromFunctionCode"]
    assert deny["Effect"] == "Deny"
    assert set(as_list(deny["Action"])) == set(
        facets_iam.ENI_ACTIONS + facets_iam.ENI_DESCRIBE_ACTIONS
    )
    assert deny["Condition"] == {"Null": {"lambda:SourceFunctionArn": "false"}}


def test_tenant_role_mounts_through_an_access_point_never_the_root_one(
    facets_template: Json,
) -> None:
    t = facets_template
    role_id = _tenant_role(t)
    assert "ManagedPolicyArns" not in t["Resources"][role_id]["Properties"]
    statements = statements_of_role(t, role_id)
    allowed_efs = [
        s for s in statements if s["Effect"] == "Allow" and "elasticfilesystem:" in str(s["Action"])
    ]
    (mount,) = allowed_efs
    assert set(as_list(mount["Action"])) == {
        "elasticfilesystem:ClientMount",
        "elasticfilesystem:ClientWrite",
    }
    assert as_list(mount["Resource"]) == [_fs_arn(t)]
    assert mount["Condition"] == {
        "StringLike": {"elasticfilesystem:AccessPointArn": ACCOUNT_ACCESS_POINTS}
    }
    never = _by_sid(statements)["FacetsNeverTheRoot"]
    assert never["Effect"] == "Deny"
    assert "elasticfilesystem:ClientMount" in as_list(never["Action"])
    assert never["Condition"] == {
        "StringEquals": {"elasticfilesystem:AccessPointArn": _root_access_point(t)}
    }
    _assert_vpc_attachment(statements)
    # Still no Lambda, table, bucket or secret.
    others = ("lambda:", "dynamodb:", "s3:", "secretsmanager:")
    assert not any(a.startswith(others) for a in actions(statements))


def test_deployer_may_give_tenant_functions_only_the_private_subnets_and_tenant_group(
    facets_template: Json,
) -> None:
    t = facets_template
    _, tenant, _ = _groups(t)
    _, policy = one(t, "AWS::IAM::ManagedPolicy")
    sids = _by_sid(policy["Properties"]["PolicyDocument"]["Statement"])
    configuration = sids["TenantFunctionConfiguration"]["Condition"]
    values = configuration["ForAllValues:StringEquals"]
    assert sorted(values["lambda:SubnetIds"]) == _private_subnets(t)
    assert values["lambda:SecurityGroupIds"] == [f"${{{tenant}.GroupId}}"]
    assert len(values["lambda:Layer"]) == 1  # and the layer, as before
    check = sids["TenantFunctionVpcCheck"]
    assert set(as_list(check["Action"])) == set(facets_iam.VPC_CONFIG_CHECK_ACTIONS)
    mount_check = sids["TenantFunctionMountCheck"]
    assert as_list(mount_check["Action"]) == ["elasticfilesystem:DescribeMountTargets"]
    assert as_list(mount_check["Resource"]) == [_fs_arn(t), ACCOUNT_ACCESS_POINTS]


def test_with_facets_allow_on_star_only_for_describe_actions_that_take_nothing_else(
    facets_template: Json,
) -> None:
    for where, document in policy_documents(facets_template):
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{where}: wildcard action {action}"
            if "*" in as_list(statement.get("Resource", [])):
                if set(as_list(statement["Action"])) == XRAY_WRITE:
                    continue  # X-Ray has no resource-level permissions (test_access.py)
                assert set(as_list(statement["Action"])) <= facets_iam.RESOURCE_STAR_ONLY, where
    # ... and still no AWS managed policy on any role.
    deployer_id, _ = one(facets_template, "AWS::IAM::ManagedPolicy")
    for role in resources(facets_template, "AWS::IAM::Role").values():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= {f"${{{deployer_id}}}"}
    assert role_of(function_by_name(facets_template, API)[1]) != _tenant_role(facets_template)


def test_cfn_lint_passes_with_facets(facets_assertion: assertions.Template) -> None:
    assert cfn_lint.lint_template(facets_assertion.to_json()) == []
