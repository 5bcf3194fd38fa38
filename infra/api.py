"""The public endpoint: an API Gateway HTTP API proxying every request to the API Lambda.

An HTTP API rather than a REST API because:
- its `$default` stage serves the API at the root of the URL, so the path boto3 signs
  with SigV4 (`/2015-03-31/functions/...`) is the path the Lambda sees;
- binary bodies (Git packs over smart HTTP) are base64-encoded in the proxy event
  without any binary-media-type configuration.
The integration uses payload format 2.0 (`rawPath`, `rawQueryString`, `body`,
`isBase64Encoded`); authentication (SigV4, HTTP Basic) is the application's own.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

THROTTLE_RATE_LIMIT = 1000
THROTTLE_BURST_LIMIT = 2000

_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integration.latency",
    "integrationError": "$context.integrationErrorMessage",
}


@jsii.implements(apigw.IAccessLogSettings)
class _AccessLogSettings:
    """JSON access logs into a log group (jsii interface, hence a class and not a dict)."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigw.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_v1.AccessLogFormat | None:
        return apigw_v1.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS))


class PublicApi(Construct):
    """HTTP API whose `$default` route (every method, every path) proxies to one Lambda."""

    def __init__(
        self, scope: Construct, id: str, *, stage: str, handler: lambda_.IFunction
    ) -> None:
        super().__init__(scope, id)
        self.http_api = apigw.HttpApi(
            self,
            "HttpApi",
            api_name=f"treadle-{stage}",
            description=f"Treadle {stage}: Lambda-compatible API, /v1 extensions and Git",
            default_integration=integrations.HttpLambdaIntegration(
                "ProxyIntegration",
                handler,
                payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0,
            ),
            create_default_stage=False,
        )
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stage = apigw.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(
                rate_limit=THROTTLE_RATE_LIMIT, burst_limit=THROTTLE_BURST_LIMIT
            ),
            access_log_settings=_AccessLogSettings(access_logs),
        )

    @property
    def url(self) -> str:
        return self.stage.url
