"""Recorded Lambda events (tests/entrypoints/events) made into live ones: signed API
Gateway requests, a Lambda context, the environment the stack gives its functions."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from treadle.adapters.aws.resources import AwsClients

EVENTS = Path(__file__).resolve().parents[1] / "entrypoints" / "events"
REGION = "us-east-1"
TENANT = "123456789012"
STAGE = "test"
API_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())  # type: ignore[no-any-return]


@dataclass
class Context:
    """What Powertools reads of a Lambda context."""

    function_name: str = f"treadlectl-{STAGE}-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:111122223333:function:treadlectl"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@dataclass
class LambdaEnv:
    clients: AwsClients
    queue_url: str
    table: str
    tenant_key: tuple[str, str]

    def sign_v2(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        key: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """The recorded HTTP API event, made into `method path?query` signed by boto3's
        signer with the tenant's key (as API Gateway would pass it on)."""
        event = copy.deepcopy(load_event("http_api_list_functions"))
        url = f"https://{API_HOST}{path}" + (f"?{query}" if query else "")
        request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
        key_id, secret = key or self.tenant_key
        SigV4Auth(Credentials(key_id, secret), "lambda", REGION).add_auth(request)
        recorded = {k: v for k, v in event["headers"].items() if k not in ("authorization",)}
        event["headers"] = {**recorded, **{k.lower(): v for k, v in request.headers.items()}}
        event["headers"]["content-length"] = str(len(body))
        event["rawPath"] = path
        event["rawQueryString"] = query
        event["queryStringParameters"] = dict(parse_qsl(query)) if query else None
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["http"]["path"] = path
        # API Gateway base64-encodes bodies it does not take for text: so do we.
        event["body"] = base64.b64encode(body).decode() if body else None
        event["isBase64Encoded"] = bool(body)
        return event
