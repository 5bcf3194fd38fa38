"""`GET /metrics`: the durable metrics in Prometheus' text format (docs/observability.md).

Who reads what: a bearer token equal to `TREADLE_METRICS_TOKEN` (a scraper) or the
admin's key reads every tenant's series; a tenant's key (SigV4 or Basic) reads only
its own; anything else is refused in the /v1 error shape, before anything is read.
"""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST

from treadle.api.auth import Authenticator, Kind
from treadle.api.errors import v1_error, v1_json_error
from treadle.api.http import Request, Response
from treadle.observability.metrics import DurableMetrics
from treadle.tenancy.errors import AccessDenied

PATH = "/metrics"


class MetricsEndpoint:
    def __init__(self, metrics: DurableMetrics, auth: Authenticator, token: str | None) -> None:
        self._metrics = metrics
        self._auth = auth
        self._token = token

    def __call__(self, request: Request) -> Response:
        try:
            if request.method not in ("GET", "HEAD"):
                return v1_json_error(405, "MethodNotAllowed", "Method not allowed.")
            tenant = self._reader(request)
        except Exception as exc:
            return v1_error(exc)
        body = self._metrics.exposition(tenant)
        return Response(200, body, {"content-type": CONTENT_TYPE_LATEST})

    def _reader(self, request: Request) -> str | None:
        """The tenant whose series the caller may read; None: every tenant's."""
        header = request.header("authorization") or ""
        if header.lower().startswith("bearer "):
            given = header[7:].strip().encode()
            if self._token is None or not hmac.compare_digest(given, self._token.encode()):
                raise AccessDenied("The bearer token is not this platform's metrics token.")
            return None
        principal = self._auth.any(request)
        if principal.kind is Kind.ADMIN:
            return None
        if principal.kind is Kind.TENANT:
            return principal.tenant
        raise AccessDenied("Reading metrics needs a tenant's or the admin's key.")
