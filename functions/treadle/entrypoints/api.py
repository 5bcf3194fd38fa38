"""The API Lambda: API Gateway proxy events into the HTTP application `treadle dev` serves.

Powertools' resolvers receive the event, with one catch-all route per payload format:
their routing is not used (the application routes on the raw path itself, see
`api/http.py`), but they give the event data classes, the response shape (bytes bodies
base64-encoded, headers per payload format) and the Lambda context.

The request the application sees must be the one the client signed (SigV4 covers the
method, the path as sent, the query, the signed headers and the body):
- HTTP API (payload 2.0, what the stack deploys, stage `$default`): `rawPath` and
  `rawQueryString`, the body decoded from base64 when `isBase64Encoded` (Git packs are
  binary).
  `rawPath` is NOT raw. AWS's page on the 2.0 format ("Create AWS Lambda proxy
  integrations for HTTP APIs", developerguide/http-api-develop-integrations-lambda.html,
  "Payload format differences") names the field but says nothing of its encoding;
  live captures do: a request for `/a%2Fb` reaches the Lambda with `"rawPath": "/a/b"`
  (github.com/fastify/aws-lambda-fastify/issues/169, honojs/hono#2156; REST APIs and
  function URLs keep the encoding, middleapi/standard-server#93), while
  `rawQueryString` stays percent-encoded. So `reencoded` restores botocore's encoding of
  the Lambda paths: a decoded one holds a literal `:` or `$` (ARNs, `$LATEST`), which
  botocore never leaves unencoded there, and an encoded one is left as it is, so either
  behaviour is served. The other routes need nothing: Treadle's names, callback ids
  (hex), tenants and repositories are made of characters no client encodes, and file
  paths travel in the query;
- REST API (payload 1.0): it has no raw path: `path` and the multi-value query and
  headers are used, which is right behind a custom domain without a stage prefix.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
)
from aws_lambda_powertools.event_handler import (
    Response as ProxyResponse,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayProxyEvent,
    APIGatewayProxyEventV2,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from treadle.api.http import Request, Response
from treadle.entrypoints.runtime import logger, metrics, platform, tracer

METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Sent as text rather than base64 (a third bigger, against Lambda's 6 MB response limit).
_TEXT_TYPES: Final = ("application/json", "application/x-amz-json", "text/", "application/xml")

http_api = APIGatewayHttpResolver()
rest_api = APIGatewayRestResolver()


def _body(raw: str | None, is_base64: bool | None) -> bytes:
    if not raw:
        return b""
    return base64.b64decode(raw) if is_base64 else raw.encode()


_DURABLE: Final = "/2025-12-01/durable-executions/"
_EXECUTION_ACTIONS: Final = ("history", "state", "checkpoint", "stop", "pause", "resume")


def reencoded(path: str) -> str:
    """A Lambda-surface path as botocore sent (and signed) it, if it arrived decoded.

    botocore percent-encodes every path label whole (`quote(value, safe="")`), so a raw
    path holds no `:` or `$`, and re-encoding one that does is exact, except for the
    `/` of an execution ARN, which the route's shape tells apart (an ARN holds 3).
    """
    if path.startswith(("/v1/", "/git/")) or not any(c in path for c in ":$"):
        return path
    if path.startswith(_DURABLE):
        rest = path[len(_DURABLE) :].rstrip("/")
        head, _, last = rest.rpartition("/")
        if last in _EXECUTION_ACTIONS and head.count("/") == 3:
            return f"{_DURABLE}{quote(head, safe='')}/{last}"
        return _DURABLE + quote(rest, safe="")
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def request_v2(event: APIGatewayProxyEventV2) -> Request:
    headers = dict(event.headers)
    if event.cookies:  # payload 2.0 moves Cookie headers out of `headers`
        headers["cookie"] = "; ".join(event.cookies)
    request = Request.build(
        event.request_context.http.method,
        reencoded(event.raw_path),
        event.raw_query_string,
        headers,
        _body(event.body, event.is_base64_encoded),
    )
    request.source_address = _source_ip(event.raw_event, "http")
    return request


def request_v1(event: APIGatewayProxyEvent) -> Request:
    multi_headers = event.multi_value_headers or {}
    headers = {k.lower(): ",".join(v) for k, v in multi_headers.items()} or {
        k.lower(): v for k, v in (event.headers or {}).items()
    }
    query = {k: list(v) for k, v in (event.multi_value_query_string_parameters or {}).items()}
    if not query:
        query = {k: [v] for k, v in (event.query_string_parameters or {}).items()}
    return Request(
        method=event.http_method.upper(),
        path=event.path,
        query=query,
        headers=headers,
        body=_body(event.body, event.is_base64_encoded),
        source_address=_source_ip(event.raw_event, "identity"),
    )


def _source_ip(raw: Mapping[str, Any], section: str) -> str:
    """The caller's address (the audit log's), read without failing when a test event
    or a custom integration leaves it out."""
    context = raw.get("requestContext") or {}
    return str((context.get(section) or {}).get("sourceIp") or "")


def _proxy_response(response: Response) -> ProxyResponse[Any]:
    metrics.add_metric(name=f"Responses{response.status // 100}xx", unit=MetricUnit.Count, value=1)
    body: str | bytes = response.body
    content_type = response.headers.get("content-type", "")
    if content_type.startswith(_TEXT_TYPES):
        with contextlib.suppress(UnicodeDecodeError):  # else bytes: base64 on the wire
            body = response.body.decode()
    return ProxyResponse(status_code=response.status, body=body, headers=dict(response.headers))


def _served(request: Request) -> ProxyResponse[Any]:
    running = platform()
    response = running.app.handle(request)
    running.promote_if_freed()  # no thread outlives the invocation to do it later
    return _proxy_response(response)


@http_api.route(".*", method=METHODS)
def _http_api_route() -> ProxyResponse[Any]:
    return _served(request_v2(http_api.current_event))


@rest_api.route(".*", method=METHODS)
def _rest_api_route() -> ProxyResponse[Any]:
    return _served(request_v1(rest_api.current_event))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)  # responses may hold secrets
@metrics.log_metrics(raise_on_empty_metrics=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("version") == "2.0":
        return http_api.resolve(event, context)
    return rest_api.resolve(event, context)
