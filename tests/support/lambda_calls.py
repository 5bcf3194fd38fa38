"""Lambda API calls made as API Gateway events through the API handler (tests/entrypoints)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any
from urllib.parse import quote

from support.lambda_events import Context, LambdaEnv
from treadle.entrypoints import api

WORKFLOW = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def double(step_ctx, n):
    return n * 2


@durable_execution
def handler(event, context: DurableContext):
    return {"doubled": context.step(double(event["n"]), name="double")}
"""


def zipped(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", source)
    return buf.getvalue()


def call(
    env: LambdaEnv, method: str, path: str, payload: Any = None, **kwargs: Any
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body or raw bytes) of a signed call through the API handler."""
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = {"content-type": "application/json"} if body else {}
    headers.update(kwargs.pop("headers", {}))
    event = env.sign_v2(method, path, body=body, headers=headers, **kwargs)
    response = api.handler(event, Context())
    raw = response.get("body") or ""
    data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
    resp_headers = response.get("headers", {})
    if resp_headers.get("content-type", "").startswith("application/json") and data:
        return response["statusCode"], resp_headers, json.loads(data)
    return response["statusCode"], resp_headers, data


def create_function(env: LambdaEnv, name: str, timeout_s: int = 3600) -> dict[str, Any]:
    status, _, body = call(
        env,
        "POST",
        "/2015-03-31/functions",
        {
            "FunctionName": name,
            "Runtime": "python3.11",
            "Role": "arn:aws:iam::123456789012:role/tenant",
            "Handler": "handler.handler",
            "Code": {"ZipFile": base64.b64encode(zipped(WORKFLOW)).decode()},
            "Timeout": 30,
            "DurableConfig": {"ExecutionTimeout": timeout_s, "RetentionPeriodInDays": 1},
        },
    )
    assert status == 201, body
    return body  # type: ignore[no-any-return]


def start(env: LambdaEnv, name: str, payload: Any) -> str:
    """An asynchronous Invoke of a durable function: its execution ARN."""
    status, headers, body = call(
        env,
        "POST",
        f"/2015-03-31/functions/{name}/invocations",
        payload,
        headers={"x-amz-invocation-type": "Event"},
    )
    assert status == 202, body
    return headers["x-amz-durable-execution-arn"]


def execution(env: LambdaEnv, arn: str) -> dict[str, Any]:
    # As botocore sends it: the whole ARN percent-encoded into one path segment.
    status, _, body = call(env, "GET", f"/2025-12-01/durable-executions/{quote(arn, safe='')}")
    assert status == 200, body
    return body  # type: ignore[no-any-return]
