"""The API handler: recorded HTTP API events, authenticated for real, into the application."""

from __future__ import annotations

import base64
import copy
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from support.lambda_calls import call, create_function, start
from support.lambda_events import TENANT, Context, LambdaEnv, load_event
from treadle import settings
from treadle.entrypoints import api
from treadle.platform.aws import derived_admin_key

REPO_ROOT = Path(__file__).resolve().parents[2]


def _body(response: dict[str, Any]) -> bytes:
    raw = response.get("body") or ""
    return base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()


def test_signed_list_functions(lambda_env: LambdaEnv, context: Context) -> None:
    create_function(lambda_env, "wf")
    recorded = load_event("http_api_list_functions")
    event = lambda_env.sign_v2("GET", recorded["rawPath"], query=recorded["rawQueryString"])
    response = api.handler(event, context)
    assert response["statusCode"] == 200, response
    assert response["headers"]["content-type"] == "application/json"
    assert not response["isBase64Encoded"]  # JSON goes as text
    names = [f["FunctionName"] for f in json.loads(response["body"])["Functions"]]
    assert names == ["wf"]


def test_a_bad_signature_is_refused_in_aws_error_shape(
    lambda_env: LambdaEnv, context: Context
) -> None:
    event = lambda_env.sign_v2("GET", "/2015-03-31/functions/", key=(lambda_env.tenant_key[0], "x"))
    response = api.handler(event, context)
    assert response["statusCode"] == 403
    assert response["headers"]["x-amzn-errortype"].startswith("InvalidSignatureException")
    # The recorded event as captured (signed by a key nobody has) is refused too.
    assert api.handler(load_event("http_api_list_functions"), context)["statusCode"] == 403


def test_git_info_refs_with_basic_auth(lambda_env: LambdaEnv, context: Context) -> None:
    create_function(lambda_env, "wf")  # commits its code to the tenant's `functions` repo
    event = copy.deepcopy(load_event("http_api_git_info_refs"))
    key_id, secret = lambda_env.tenant_key
    event["headers"]["authorization"] = (
        "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    )
    response = api.handler(event, context)
    assert response["statusCode"] == 200, response
    assert response["headers"]["content-type"] == "application/x-git-upload-pack-advertisement"
    assert response["isBase64Encoded"]  # binary content types go base64
    body = _body(response)
    assert body.startswith(b"001e# service=git-upload-pack\n")
    assert b"refs/heads/main" in body

    event["headers"]["authorization"] = "Basic " + base64.b64encode(b"AKIANOBODY:nope").decode()
    assert api.handler(event, context)["statusCode"] == 401


def test_admin_key_is_derived_from_the_token_secret(lambda_env: LambdaEnv) -> None:
    # Every container computes the same admin key; no container keeps files.
    admin = derived_admin_key(b"k" * 64)  # the fixture's secret
    status, _, body = call(lambda_env, "GET", "/v1/tenants", key=admin)
    assert status == 200, body
    assert [t["accountId"] for t in body["tenants"]] == [TENANT]
    status, _, _ = call(lambda_env, "GET", "/v1/tenants")  # a tenant's key is not the admin's
    assert status == 403


def test_rest_api_v1_events_are_served_too(lambda_env: LambdaEnv, context: Context) -> None:
    create_function(lambda_env, "wf")
    v2 = lambda_env.sign_v2("GET", "/2015-03-31/functions/wf", query="Qualifier=%24LATEST")
    v1 = {
        "resource": "/{proxy+}",
        "path": v2["rawPath"],
        "httpMethod": "GET",
        "headers": v2["headers"],
        "multiValueHeaders": {k: [v] for k, v in v2["headers"].items()},
        "queryStringParameters": {"Qualifier": "$LATEST"},
        "multiValueQueryStringParameters": {"Qualifier": ["$LATEST"]},
        "requestContext": {"requestId": "r1", "stage": "prod", "httpMethod": "GET"},
        "body": None,
        "isBase64Encoded": False,
    }
    response = api.handler(v1, context)
    assert response["statusCode"] == 200, response
    assert b'"FunctionName":"wf"' in _body(response)


def test_settings_read_the_variables_the_stack_sets() -> None:
    sys.path.insert(0, str(REPO_ROOT))
    try:
        from infra import names
    finally:
        sys.path.remove(str(REPO_ROOT))
    for name in (
        "ENV_STAGE",
        "ENV_REGION",
        "ENV_TABLE",
        "ENV_BUCKET",
        "ENV_QUEUE_URL",
        "ENV_TENANT_ROLE_ARN",
        "ENV_TOKEN_SECRET_ARN",
        "ENV_ADMIN_SECRET_ARN",
        "ENV_TENANT_LAYER_ARN",
        "ENV_API_URL",
        "ENV_DATA_DIR",
        "ENV_SYNC_INVOKE_WAIT",
    ):
        assert getattr(settings, name) == getattr(names, name), name


def test_a_decoded_raw_path_is_served_as_signed(lambda_env: LambdaEnv, context: Context) -> None:
    create_function(lambda_env, "wf")
    arn = start(lambda_env, "wf", {"n": 1})
    encoded = f"/2025-12-01/durable-executions/{quote(arn, safe='')}/history"
    event = lambda_env.sign_v2("GET", encoded)
    event["rawPath"] = unquote(encoded)  # should API Gateway hand the path on decoded
    response = api.handler(event, context)
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"])["Events"][0]["EventType"] == "ExecutionStarted"


def test_a_get_function_by_arn_with_the_path_as_http_apis_deliver_it(
    lambda_env: LambdaEnv, context: Context
) -> None:
    # `aws lambda get-function --function-name <ARN>`: botocore sends (and signs) the ARN
    # percent-encoded (`arn%3Aaws%3A...`); an HTTP API hands `rawPath` on decoded, with
    # `rawQueryString` still encoded (the event reproduces that shape, see api.py).
    create_function(lambda_env, "wf")
    recorded = load_event("http_api_get_function_decoded_path")
    decoded, query = recorded["rawPath"], recorded["rawQueryString"]
    assert ":" in decoded and "%" in query
    head, _, arn = decoded.rpartition("/")
    sent = f"{head}/{quote(arn, safe='')}"  # what botocore put on the wire
    event = lambda_env.sign_v2("GET", sent, query=query)
    event["rawPath"] = event["requestContext"]["http"]["path"] = decoded
    response = api.handler(event, context)
    assert response["statusCode"] == 200, response
    configuration = json.loads(response["body"])["Configuration"]
    assert configuration["FunctionName"] == "wf" and configuration["Version"] == "$LATEST"


def test_reencoded_restores_botocore_encoding_only_of_decoded_paths() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:wf:$LATEST/durable-execution/n/i"
    raw = f"/2025-12-01/durable-executions/{quote(arn, safe='')}"
    for path in (raw, raw + "/state", "/2015-03-31/functions/wf%3A1/invocations"):
        assert api.reencoded(path) == path  # raw paths are left alone
        assert api.reencoded(unquote(path)) == path
    assert (
        api.reencoded("/git/123456789012/a:b.git/info/refs")
        == "/git/123456789012/a:b.git/info/refs"
    )
