"""Least privilege on the synthesised template: IAM, the platform secrets, the tenant layer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cfn_helpers import (
    Json,
    actions,
    as_list,
    function_by_name,
    one,
    policy_documents,
    resources,
    role_of,
    statements_of_role,
)
from qa_stack import (
    API,
    ARN_PREFIX,
    ORCHESTRATOR,
    STAGE,
    SWEEP,
    TENANT_LOG_GROUPS,
    TENANT_PATTERN,
    XRAY_WRITE,
    admin_secret_id,
    role_statements,
    tenant_layer_id,
)

from infra import iam, names, tenant_layer
from treadle.adapters.aws.resources import ADMIN_KEY_ID_FIELD, ADMIN_SECRET_FIELD
from treadle.adapters.aws.tenant_credentials import WRAPPER_PATH

pytestmark = pytest.mark.xdist_group("infra")


# --- IAM ------------------------------------------------------------------------------


def test_deployer_policy_limited_to_tenant_functions_role_and_layer(template: Json) -> None:
    policy_id, policy = one(template, "AWS::IAM::ManagedPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    tenant_role_id, _ = one(
        template, "AWS::IAM::Role", Description=f"Treadle {STAGE}: tenant function execution role"
    )
    layer = f"${{{tenant_layer_id(template)}}}"
    lambda_statements = [s for s in statements if as_list(s["Action"])[0].startswith("lambda:")]
    assert actions(lambda_statements) == set(iam.DEPLOYER_LAMBDA_ACTIONS) | {
        "lambda:GetLayerVersion"
    }
    for statement in lambda_statements:
        if as_list(statement["Action"]) == ["lambda:GetLayerVersion"]:
            assert as_list(statement["Resource"]) == [layer]  # that layer version only
            continue
        assert as_list(statement["Resource"]) == [TENANT_PATTERN]
        # Whatever can attach a layer may attach only the platform's tenant layer.
        if set(as_list(statement["Action"])) & set(iam.DEPLOYER_LAYERED_ACTIONS):
            assert set(as_list(statement["Action"])) == set(iam.DEPLOYER_LAYERED_ACTIONS)
            assert statement["Condition"] == {
                "ForAllValues:StringEquals": {"lambda:Layer": [layer]}
            }
        else:
            assert "Condition" not in statement
    (pass_role,) = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    assert as_list(pass_role["Action"]) == ["iam:PassRole"]
    assert as_list(pass_role["Resource"]) == [f"${{{tenant_role_id}.Arn}}"]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}
    }
    assert len(statements) == len(lambda_statements) + 1
    # Attached to the API and the orchestrator, never to the sweep or the tenant role.
    holders = {
        role_id
        for role_id, role in resources(template, "AWS::IAM::Role").items()
        if f"${{{policy_id}}}" in role["Properties"].get("ManagedPolicyArns", [])
    }
    expected = {role_of(function_by_name(template, n)[1]) for n in (API, ORCHESTRATOR)}
    assert holders == expected


def test_tenant_role_reaches_only_its_logs(template: Json) -> None:
    role_id, role = one(
        template, "AWS::IAM::Role", Description=f"Treadle {STAGE}: tenant function execution role"
    )
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
        }
    ]
    assert "ManagedPolicyArns" not in role["Properties"]
    statements = statements_of_role(template, role_id)
    # No Lambda action: tenant code checkpoints against Treadle with its sandbox key.
    assert actions(statements) == set(iam.LOG_WRITE_ACTIONS)
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert as_list(statement["Resource"]) == [
            TENANT_LOG_GROUPS,
            f"{TENANT_LOG_GROUPS}:log-stream:*",
        ]


def test_the_sweep_puts_status_changes_on_the_default_bus_only(template: Json) -> None:
    _, sweep = function_by_name(template, SWEEP)
    assert sweep["Properties"]["Environment"]["Variables"][names.ENV_EVENT_BUS] == "default"
    puts = [
        st
        for name in (API, ORCHESTRATOR, SWEEP)
        for st in role_statements(template, name)
        if "events:PutEvents" in as_list(st["Action"])
    ]
    assert len(puts) == 1 and puts[0] in role_statements(template, SWEEP)
    bus = ARN_PREFIX.replace("{service}", "events") + "event-bus/default"
    assert as_list(puts[0]["Resource"]) == [bus]


def test_log_groups_are_listed_with_the_only_resource_iam_takes_for_it(template: Json) -> None:
    listing = [
        st
        for st in role_statements(template, API)
        if "logs:DescribeLogGroups" in as_list(st["Action"])
    ]
    assert len(listing) == 1 and as_list(listing[0]["Action"]) == ["logs:DescribeLogGroups"]
    every_group = ARN_PREFIX.replace("{service}", "logs") + "log-group:*"
    assert as_list(listing[0]["Resource"]) == [every_group]


# What `tracing=ACTIVE` grants a platform function (infra/functions.py).


def test_no_allow_statement_has_a_wildcard_action_or_resource(template: Json) -> None:
    checked = 0
    for where, document in policy_documents(template):
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue  # the SSL-only denies are `s3:*` / `sqs:*` on purpose
            checked += 1
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{where}: wildcard action {action}"
            if set(as_list(statement["Action"])) == XRAY_WRITE:
                continue  # X-Ray has no resource-level permissions: "*" is its only form
            for resource in as_list(statement.get("Resource", [])):
                assert resource != "*", f"{where}: resource *"
    assert checked > 10


def test_platform_roles_reach_only_platform_resources(template: Json) -> None:
    api, orchestrator, sweep = (
        actions(role_statements(template, n)) for n in (API, ORCHESTRATOR, SWEEP)
    )
    assert "iam:PassRole" in api and "iam:PassRole" in orchestrator
    assert not any(a.startswith(("lambda:", "iam:")) for a in sweep)
    # The sweep's garbage collection reaches the Git objects and deletes code packages,
    # nothing else of the bucket.
    bucket_id, _ = one(template, "AWS::S3::Bucket")
    on_s3 = [s for s in role_statements(template, SWEEP) if as_list(s["Action"])[0][:3] == "s3:"]
    assert len(on_s3) == 3  # the objects under git/, listing them, deleting under code/
    for statement in on_s3:
        targets = [json.dumps(r) for r in as_list(statement["Resource"])]
        if any("code/*" in r for r in targets):
            assert as_list(statement["Action"]) == ["s3:DeleteObject"]
            continue
        assert all("git/*" in r or statement.get("Condition") for r in targets), targets
        if statement.get("Condition"):
            assert statement["Condition"] == {"StringLike": {"s3:prefix": ["git/*"]}}
            assert as_list(statement["Action"]) == ["s3:ListBucket"]
        assert all(bucket_id in r for r in targets)
    assert "sqs:ReceiveMessage" in orchestrator and "sqs:ReceiveMessage" not in api
    table_id, _ = one(template, "AWS::DynamoDB::Table")
    for name in (API, ORCHESTRATOR, SWEEP):
        for statement in role_statements(template, name):
            if as_list(statement["Action"]) == ["dynamodb:Scan"]:  # the table, no index
                assert name != ORCHESTRATOR
                assert as_list(statement["Resource"]) == [f"${{{table_id}.Arn}}"]
            elif as_list(statement["Action"])[0].startswith("dynamodb:"):
                assert as_list(statement["Resource"]) == [
                    f"${{{table_id}.Arn}}",
                    f"${{{table_id}.Arn}}/index/*",
                ]
    # The admin key: the API only.
    admin_secret = f"${{{admin_secret_id(template)}}}"
    readers = {
        name
        for name in (API, ORCHESTRATOR, SWEEP)
        for statement in role_statements(template, name)
        if admin_secret in as_list(statement["Resource"])
    }
    assert readers == {API}
    # No role gets an AWS managed policy (AWSLambdaBasicExecutionRole allows logs on `*`):
    # the only managed policy attached anywhere is the stack's own deployer policy.
    deployer_id, _ = one(template, "AWS::IAM::ManagedPolicy")
    for role in resources(template, "AWS::IAM::Role").values():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= {f"${{{deployer_id}}}"}


# --- secrets and the tenant layer -----------------------------------------------------


def test_every_secret_a_platform_function_is_told_of_it_may_read(template: Json) -> None:
    """A function named a secret in its environment reads it at start-up (the platform
    does): without the grant it fails on AWS, where moto would not have noticed."""
    for name in (API, ORCHESTRATOR, SWEEP):
        _, function = function_by_name(template, name)
        env = function["Properties"]["Environment"]["Variables"]
        secrets = {v for k, v in env.items() if k.endswith("_SECRET_ARN")}
        assert secrets, name
        readable = {
            r
            for statement in role_statements(template, name)
            if "secretsmanager:GetSecretValue" in as_list(statement["Action"])
            for r in as_list(statement["Resource"])
        }
        assert secrets <= readable, f"{name} is told of {secrets - readable} but may not read it"


def test_admin_key_is_generated_by_secrets_manager(template: Json) -> None:
    secret = template["Resources"][admin_secret_id(template)]
    generate = secret["Properties"]["GenerateSecretString"]
    # The key id is fixed by the template; the secret is generated, never in the template.
    assert json.loads(generate["SecretStringTemplate"]) == {
        ADMIN_KEY_ID_FIELD: names.admin_key_id(STAGE)
    }
    assert generate["GenerateStringKey"] == ADMIN_SECRET_FIELD
    assert generate["PasswordLength"] >= 40 and generate["ExcludePunctuation"] is True
    assert "SecretString" not in secret["Properties"]
    _, api = function_by_name(template, API)
    env = api["Properties"]["Environment"]["Variables"]
    assert env[names.ENV_ADMIN_SECRET_ARN] == f"${{{admin_secret_id(template)}}}"


def test_admin_key_id_is_valid_for_the_settings_and_not_a_tenant_form() -> None:
    from treadle.settings import Settings

    for stage in ("dev", "a", "abcdefghijkl"):
        key_id = names.admin_key_id(stage)
        Settings(admin_access_key_id=key_id, admin_secret_access_key="s")  # type: ignore[arg-type]
        assert not key_id.startswith("AKIA")


def test_tenant_layer_serves_every_tenant_runtime_and_architecture(template: Json) -> None:
    layer = template["Resources"][tenant_layer_id(template)]["Properties"]
    from treadle.app.functions import SUPPORTED_RUNTIMES

    assert set(layer["CompatibleRuntimes"]) == set(SUPPORTED_RUNTIMES)
    assert set(layer["CompatibleArchitectures"]) == {"x86_64", "arm64"}


def test_tenant_layer_wrapper_is_where_the_runtime_points_and_executable() -> None:
    # Lambda unpacks a layer at /opt; the layer's source holds bin/<wrapper>.
    relative = Path(WRAPPER_PATH).relative_to("/opt")
    wrapper = tenant_layer.TENANT_LAYER_SOURCE / relative
    assert wrapper.is_file()
    # Lambda execs it (asset zips keep file modes): git must keep it 100755 too.
    assert wrapper.stat().st_mode & 0o111 == 0o111
