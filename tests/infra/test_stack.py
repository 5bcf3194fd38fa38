"""The CDK app, checked on its synthesised template: storage, functions, API, outputs.

IAM, secrets and the tenant layer: test_access.py. The synthesis is conftest.py's.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, assertions
from cfn_helpers import Json, function_by_name, one, resources
from qa_stack import (
    API,
    ORCHESTRATOR,
    STAGE,
    SWEEP,
    TENANT_FUNCTIONS,
    TENANT_PATTERN,
    admin_secret_id,
    tenant_layer_id,
)

from infra import app as infra_app
from infra import cfn_lint, functions, names, storage
from treadle.adapters.aws import tables

pytestmark = pytest.mark.xdist_group("infra")


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
    only = {API: names.API_ONLY_ENV_VARS, SWEEP: names.SWEEP_ONLY_ENV_VARS}.get(name, ())
    assert set(env) == set(names.PLATFORM_ENV_VARS) | set(only)
    assert env[names.ENV_STAGE] == STAGE
    # The version ARN (a Ref of a LayerVersion), which CreateFunction takes in Layers.
    assert env[names.ENV_TENANT_LAYER_ARN] == f"${{{tenant_layer_id(template)}}}"
    assert env[names.ENV_TENANT_FUNCTION_PREFIX] == f"treadle-{STAGE}-"
    assert env[names.ENV_TENANT_ROLE_ARN].endswith(".Arn}")
    assert props["LoggingConfig"]["LogGroup"].startswith("${")


def test_code_asset_alone_loads_the_lifecycles(tmp_path: Path) -> None:
    # The asset is functions/ as is: a copy of it, outside the checkout, must find the
    # lifecycle files it ships (package data) with no environment variable set.
    asset = tmp_path / "asset"
    shutil.copytree(
        functions.FUNCTIONS_DIR,
        asset,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import treadle; "
        "from treadle.domain.lifecycle import execution_lifecycle, operation_lifecycles; "
        "print(treadle.__file__, len(execution_lifecycle().states), len(operation_lifecycles()))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREADLE_")}
    out = subprocess.run(
        [sys.executable, "-I", "-c", script, str(asset)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert Path(out[0]).is_relative_to(asset)
    assert int(out[1]) > 0 and int(out[2]) > 0


def test_only_the_api_answers_sync_invokes_before_api_gateway_gives_up(
    assertion: assertions.Template,
) -> None:
    wait = names.API_SYNC_INVOKE_WAIT_S
    # Under the API function's timeout, itself under API Gateway's integration timeout.
    assert 0 < wait < functions.API_TIMEOUT.to_seconds() < 30
    assertion.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": API,
            "Environment": {
                "Variables": assertions.Match.object_like({names.ENV_SYNC_INVOKE_WAIT: str(wait)})
            },
        },
    )
    for name in (ORCHESTRATOR, SWEEP):
        assertion.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "FunctionName": name,
                "Environment": {
                    "Variables": assertions.Match.object_like(
                        {names.ENV_SYNC_INVOKE_WAIT: assertions.Match.absent()}
                    )
                },
            },
        )
    # The value is one the platform's settings accept.
    from treadle.settings import Settings

    assert Settings(sync_invoke_wait_s=wait).sync_invoke_wait_s == wait


def test_platform_functions_are_outside_the_tenant_pattern(template: Json) -> None:
    functions = resources(template, "AWS::Lambda::Function").values()
    platform_names = {f["Properties"]["FunctionName"] for f in functions}
    assert platform_names == {API, ORCHESTRATOR, SWEEP}
    for name in platform_names:
        assert not fnmatch.fnmatchcase(name, f"treadle-{STAGE}-*")
        assert not fnmatch.fnmatchcase(f"{TENANT_FUNCTIONS}{name}", TENANT_PATTERN)


# --- outputs and lint ---------------------------------------------------------------


def test_outputs(template: Json) -> None:
    outputs = template["Outputs"]
    for key in (
        names.OUTPUT_API_URL,
        names.OUTPUT_TABLE_NAME,
        names.OUTPUT_BUCKET_NAME,
        names.OUTPUT_QUEUE_URL,
        names.OUTPUT_TENANT_ROLE_ARN,
    ):
        assert key in outputs
    assert outputs[names.OUTPUT_API_URL]["Value"].startswith("https://${")
    assert outputs[names.OUTPUT_ADMIN_SECRET_ARN]["Value"] == f"${{{admin_secret_id(template)}}}"
    assert outputs[names.OUTPUT_TENANT_LAYER_ARN]["Value"] == f"${{{tenant_layer_id(template)}}}"


def test_cfn_lint_passes(assertion: assertions.Template) -> None:
    # The same check as `make cfn-lint` (infra/cfn_lint.py), on this module's synthesis.
    assert cfn_lint.lint_template(assertion.to_json()) == []


# --- app entry point ----------------------------------------------------------------


def test_stage_must_not_contain_separators() -> None:
    assert names.validate_stage("prod2") == "prod2"
    for bad in ("dev-x", "Dev", "", "1dev", "a" * 13):
        with pytest.raises(ValueError):
            names.validate_stage(bad)


def test_app_reads_stage_and_layers_from_context(tmp_path: Path) -> None:
    for layer in ("deps", "tenant"):
        (tmp_path / layer / "python").mkdir(parents=True)
        (tmp_path / layer / "python" / "marker.py").write_text("")
    context = {
        names.CONTEXT_STAGE: "ctx",
        names.CONTEXT_LAYER_DIR: str(tmp_path / "deps"),
        names.CONTEXT_TENANT_LAYER_DIR: str(tmp_path / "tenant"),
    }
    app = infra_app.build_app(App(context=context))
    stack: Any = app.node.find_child(names.stack_name("ctx"))
    template = assertions.Template.from_stack(stack)
    # Platform dependencies, tenant layer; no missing-layer warning.
    template.resource_count_is("AWS::Lambda::LayerVersion", 2)
    warnings = assertions.Annotations.from_stack(stack).find_warning(
        "*", assertions.Match.any_value()
    )
    assert not [w for w in warnings if "treadle:no-" in json.dumps(w.entry.data)]
    template.has_resource_properties(
        "AWS::Lambda::Function", {"FunctionName": names.platform_function_name("ctx", "api")}
    )
