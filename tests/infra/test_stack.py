"""The CDK app, checked on its synthesised template (one synth per module)."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
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
    render,
    resources,
    role_of,
    statements_of_role,
)

from infra import app as infra_app
from infra import functions, iam, names, storage
from infra import stack as infra_stack
from treadle.adapters.aws import tables

pytestmark = pytest.mark.xdist_group("infra")

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


@pytest.fixture(scope="module")
def assertion() -> assertions.Template:
    """The one synthesis of this module (about 2 s: jsii runs the CDK in node)."""
    stack = infra_stack.TreadleStack(App(), names.stack_name(STAGE), stage=STAGE)
    return assertions.Template.from_stack(stack)


@pytest.fixture(scope="module")
def template(assertion: assertions.Template) -> Json:
    rendered: Json = render(assertion.to_json())
    return rendered


def _role_statements(template: Json, function_name: str) -> list[Json]:
    _, function = function_by_name(template, function_name)
    return statements_of_role(template, role_of(function))


# --- S3 -----------------------------------------------------------------------------


def test_bucket_is_encrypted_versioned_private_and_retained(assertion: assertions.Template) -> None:
    assertion.resource_count_is("AWS::S3::Bucket", 1)
    assertion.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": {
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_bucket_policy_denies_plain_http(template: Json) -> None:
    _, policy = one(template, "AWS::S3::BucketPolicy")
    denies = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    conditions = [s["Condition"] for s in denies]
    assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
    assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions


# --- DynamoDB -----------------------------------------------------------------------


def test_table_keys_billing_ttl_pitr_and_retention(assertion: assertions.Template) -> None:
    assertion.resource_count_is("AWS::DynamoDB::Table", 1)
    assertion.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [
                    {"AttributeName": names.TABLE_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": names.TABLE_SORT_KEY, "KeyType": "RANGE"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
                "TimeToLiveSpecification": {
                    "AttributeName": names.TABLE_TTL_ATTRIBUTE,
                    "Enabled": True,
                },
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "DeletionProtectionEnabled": True,
            },
            "DeletionPolicy": "Retain",
        },
    )


def test_table_indexes_are_the_dynamodb_adapters(template: Json) -> None:
    _, table = one(template, "AWS::DynamoDB::Table")
    props = table["Properties"]

    def canonical(items: list[Any]) -> list[str]:
        return sorted(json.dumps(i, sort_keys=True) for i in items)

    assert canonical(props["GlobalSecondaryIndexes"]) == canonical(
        list(tables.global_secondary_indexes())
    )
    assert canonical(props["AttributeDefinitions"]) == canonical(
        list(tables.attribute_definitions())
    )
    index_names = {i["IndexName"] for i in props["GlobalSecondaryIndexes"]}
    assert {names.GSI_BY_FUNCTION_STATUS, names.GSI_DUE_TIMERS} <= index_names


# --- SQS ----------------------------------------------------------------------------


def test_queue_encrypted_with_dead_letter_redrive(template: Json) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    assert len(queues) == 2
    assert all(q["Properties"].get("SqsManagedSseEnabled") is True for q in queues.values())
    work = [(k, q) for k, q in queues.items() if "RedrivePolicy" in q["Properties"]]
    assert len(work) == 1
    _, queue = work[0]
    (dlq_id,) = set(queues) - {work[0][0]}
    redrive = queue["Properties"]["RedrivePolicy"]
    assert redrive == {
        "deadLetterTargetArn": f"${{{dlq_id}.Arn}}",
        "maxReceiveCount": storage.MAX_RECEIVE_COUNT,
    }
    visibility = queue["Properties"]["VisibilityTimeout"]
    assert visibility >= functions.ORCHESTRATOR_TIMEOUT.to_seconds()
    _, orchestrator = function_by_name(template, ORCHESTRATOR)
    assert visibility >= orchestrator["Properties"]["Timeout"]


def test_orchestrator_consumes_queue_with_partial_batch_failures(template: Json) -> None:
    _, mapping = one(template, "AWS::Lambda::EventSourceMapping")
    orchestrator_id, _ = function_by_name(template, ORCHESTRATOR)
    props = mapping["Properties"]
    assert props["FunctionName"] == f"${{{orchestrator_id}}}"
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue_id = next(
        k
        for k, q in resources(template, "AWS::SQS::Queue").items()
        if "RedrivePolicy" in q["Properties"]
    )
    assert props["EventSourceArn"] == f"${{{queue_id}.Arn}}"


# --- timers -------------------------------------------------------------------------


def test_sweep_runs_every_minute(template: Json) -> None:
    _, rule = one(template, "AWS::Events::Rule")
    sweep_id, _ = function_by_name(template, SWEEP)
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert rule["Properties"]["State"] == "ENABLED"
    assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [f"${{{sweep_id}.Arn}}"]


# --- API Gateway --------------------------------------------------------------------


def test_api_gateway_proxies_every_request_to_the_api_function(template: Json) -> None:
    api_id, api = one(template, "AWS::ApiGatewayV2::Api")
    assert api["Properties"]["ProtocolType"] == "HTTP"
    api_fn_id, _ = function_by_name(template, API)
    integration_id, integration = one(template, "AWS::ApiGatewayV2::Integration")
    assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
    assert integration["Properties"]["PayloadFormatVersion"] == "2.0"
    assert integration["Properties"]["IntegrationUri"] == f"${{{api_fn_id}.Arn}}"
    _, route = one(template, "AWS::ApiGatewayV2::Route")
    assert route["Properties"]["RouteKey"] == "$default"
    assert route["Properties"]["Target"] == f"integrations/${{{integration_id}}}"
    _, stage = one(template, "AWS::ApiGatewayV2::Stage")
    assert stage["Properties"]["StageName"] == "$default"
    assert stage["Properties"]["AutoDeploy"] is True
    assert "$context.requestId" in stage["Properties"]["AccessLogSettings"]["Format"]
    _, permission = one(template, "AWS::Lambda::Permission", Principal="apigateway.amazonaws.com")
    assert permission["Properties"]["SourceArn"].startswith("arn:${AWS::Partition}:execute-api:")
    assert f"${{{api_id}}}" in permission["Properties"]["SourceArn"]


# --- platform functions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "handler"),
    [
        (API, names.API_HANDLER),
        (ORCHESTRATOR, names.ORCHESTRATOR_HANDLER),
        (SWEEP, names.SWEEP_HANDLER),
    ],
)
def test_platform_function_runtime_handler_and_settings(
    template: Json, name: str, handler: str
) -> None:
    _, function = function_by_name(template, name)
    props = function["Properties"]
    assert props["Handler"] == handler
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    env = props["Environment"]["Variables"]
    assert set(env) == set(names.PLATFORM_ENV_VARS)
    assert env[names.ENV_STAGE] == STAGE
    assert env[names.ENV_TENANT_FUNCTION_PREFIX] == f"treadle-{STAGE}-"
    assert env[names.ENV_TENANT_ROLE_ARN].endswith(".Arn}")
    assert props["LoggingConfig"]["LogGroup"].startswith("${")


def test_platform_functions_are_outside_the_tenant_pattern(template: Json) -> None:
    functions = resources(template, "AWS::Lambda::Function").values()
    platform_names = {f["Properties"]["FunctionName"] for f in functions}
    assert platform_names == {API, ORCHESTRATOR, SWEEP}
    for name in platform_names:
        assert not fnmatch.fnmatchcase(name, f"treadle-{STAGE}-*")
        assert not fnmatch.fnmatchcase(f"{TENANT_FUNCTIONS}{name}", TENANT_PATTERN)


# --- IAM ------------------------------------------------------------------------------


def test_deployer_policy_limited_to_tenant_functions_and_tenant_role(template: Json) -> None:
    policy_id, policy = one(template, "AWS::IAM::ManagedPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    tenant_role_id, _ = one(
        template, "AWS::IAM::Role", Description=f"Treadle {STAGE}: tenant function execution role"
    )
    lambda_statements = [s for s in statements if as_list(s["Action"])[0].startswith("lambda:")]
    assert actions(lambda_statements) == set(iam.DEPLOYER_LAMBDA_ACTIONS)
    for statement in lambda_statements:
        assert as_list(statement["Resource"]) == [TENANT_PATTERN]
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


def test_tenant_role_reaches_only_the_checkpoint_api_and_its_logs(template: Json) -> None:
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
    assert actions(statements) == set(iam.TENANT_CHECKPOINT_ACTIONS) | set(iam.LOG_WRITE_ACTIONS)
    for statement in statements:
        assert statement["Effect"] == "Allow"
        if as_list(statement["Action"])[0].startswith("lambda:"):
            assert as_list(statement["Resource"]) == [f"{TENANT_PATTERN}:*"]
        else:
            assert as_list(statement["Resource"]) == [
                TENANT_LOG_GROUPS,
                f"{TENANT_LOG_GROUPS}:log-stream:*",
            ]
    services = {a.split(":")[0] for a in actions(statements)}
    assert services == {"lambda", "logs"}


def test_no_allow_statement_has_a_wildcard_action_or_resource(template: Json) -> None:
    checked = 0
    for where, document in policy_documents(template):
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue  # the SSL-only denies are `s3:*` / `sqs:*` on purpose
            checked += 1
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{where}: wildcard action {action}"
            for resource in as_list(statement.get("Resource", [])):
                assert resource != "*", f"{where}: resource *"
    assert checked > 10


def test_platform_roles_reach_only_platform_resources(template: Json) -> None:
    api, orchestrator, sweep = (
        actions(_role_statements(template, n)) for n in (API, ORCHESTRATOR, SWEEP)
    )
    assert "iam:PassRole" in api and "iam:PassRole" in orchestrator
    assert not any(a.startswith(("lambda:", "iam:", "s3:", "secretsmanager:")) for a in sweep)
    assert "sqs:ReceiveMessage" in orchestrator and "sqs:ReceiveMessage" not in api
    table_id, _ = one(template, "AWS::DynamoDB::Table")
    for name in (API, ORCHESTRATOR, SWEEP):
        for statement in _role_statements(template, name):
            if as_list(statement["Action"])[0].startswith("dynamodb:"):
                assert as_list(statement["Resource"]) == [
                    f"${{{table_id}.Arn}}",
                    f"${{{table_id}.Arn}}/index/*",
                ]
    # No role gets an AWS managed policy (AWSLambdaBasicExecutionRole allows logs on `*`):
    # the only managed policy attached anywhere is the stack's own deployer policy.
    deployer_id, _ = one(template, "AWS::IAM::ManagedPolicy")
    for role in resources(template, "AWS::IAM::Role").values():
        assert set(role["Properties"].get("ManagedPolicyArns", [])) <= {f"${{{deployer_id}}}"}


# --- outputs and lint ---------------------------------------------------------------


def test_outputs(template: Json) -> None:
    outputs = template["Outputs"]
    for key in (
        names.OUTPUT_API_URL,
        names.OUTPUT_TABLE_NAME,
        names.OUTPUT_BUCKET_NAME,
        names.OUTPUT_QUEUE_URL,
    ):
        assert key in outputs
    assert outputs[names.OUTPUT_API_URL]["Value"].startswith("https://${")


# W3005 ("DependsOn already enforced by GetAtt") is how CDK orders a function after its
# role's policy; it is redundant, not wrong.
CFN_LINT_IGNORED = {"W3005"}


def test_cfn_lint_passes(assertion: assertions.Template) -> None:
    from cfnlint.api import ManualArgs, lint  # type: ignore[import-untyped]

    matches = lint(
        json.dumps(assertion.to_json()),
        config=ManualArgs(regions=["us-east-1", "eu-west-1"]),
    )
    problems = [str(m) for m in matches if m.rule.id not in CFN_LINT_IGNORED]
    assert problems == []


# --- app entry point ----------------------------------------------------------------


def test_stage_must_not_contain_separators() -> None:
    assert names.validate_stage("prod2") == "prod2"
    for bad in ("dev-x", "Dev", "", "1dev", "a" * 13):
        with pytest.raises(ValueError):
            names.validate_stage(bad)


def test_app_reads_stage_and_dependency_layer_from_context(tmp_path: Path) -> None:
    (tmp_path / "python").mkdir()
    (tmp_path / "python" / "marker.py").write_text("")
    app = infra_app.build_app(App(context={"stage": "ctx", "layerDir": str(tmp_path)}))
    stack: Any = app.node.find_child(names.stack_name("ctx"))
    template = assertions.Template.from_stack(stack)
    template.resource_count_is("AWS::Lambda::LayerVersion", 2)
    template.has_resource_properties(
        "AWS::Lambda::Function", {"FunctionName": names.platform_function_name("ctx", "api")}
    )
