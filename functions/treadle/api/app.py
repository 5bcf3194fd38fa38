"""The HTTP application: routing, tenant resolution, size limits and error mapping."""

from __future__ import annotations

import logging
from collections.abc import Callable

from treadle.api.errors import aws_error, lambda_error
from treadle.api.http import Request, Response, Router

log = logging.getLogger(__name__)

TenantResolver = Callable[[Request], str]
TargetHandler = Callable[[Request], Response]


class Application:
    def __init__(
        self,
        *,
        router: Router,
        resolve_tenant: TenantResolver,
        targets: dict[str, TargetHandler],
        max_request_bytes: int,
    ) -> None:
        self.router = router
        self.resolve_tenant = resolve_tenant
        # awsJson services (CloudWatch Logs) post to "/" and name the operation in
        # X-Amz-Target; they are dispatched by that header's prefix.
        self.targets = targets
        self.max_request_bytes = max_request_bytes

    def handle(self, request: Request) -> Response:
        try:
            if len(request.body) > self.max_request_bytes:
                return aws_error(
                    413,
                    "RequestTooLargeException",
                    f"Request must be smaller than {self.max_request_bytes} bytes.",
                )
            target = request.header("x-amz-target")
            if target and request.method == "POST" and request.path in ("/", ""):
                service = target.split(".", 1)[0]
                handler = self.targets.get(service)
                if handler is None:
                    return aws_error(400, "UnknownOperationException", f"Unknown target {target}")
                request.tenant = self.resolve_tenant(request)
                return handler(request)
            route, known = self.router.match(request)
            if route is None:
                if known:
                    return aws_error(405, "MethodNotAllowedException", "Method not allowed.")
                return aws_error(404, "UnknownOperationException", f"No route for {request.path}")
            if not request.path.startswith("/v1/health"):
                request.tenant = self.resolve_tenant(request)
            return route(request)
        except Exception as exc:  # the one place errors become responses
            return lambda_error(exc)
