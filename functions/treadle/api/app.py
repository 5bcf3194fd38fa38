"""The HTTP application: surfaces, authentication, size limits and error mapping.

Four surfaces share one application, told apart by the path:
- `/console/...`: the web console (HTML, a session cookie; `treadle.console`);
- `/git/<tenant>/<repo>.git/...`: Git smart HTTP, Basic auth, plain-text errors;
- `/v1/...`: platform extensions, SigV4 or Basic, JSON errors `{"error": {...}}`;
- everything else: the Lambda-compatible surface (and CloudWatch Logs' awsJson
  targets), SigV4, AWS's error shape.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from treadle.api.audit import Auditor
from treadle.api.auth import Authenticator
from treadle.api.errors import aws_error, lambda_error, text_error, v1_error, v1_json_error
from treadle.api.http import REQUEST_ID_HEADER, Request, Response, Router
from treadle.domain.audit import PrincipalKind
from treadle.tenancy.errors import AccessDenied

log = logging.getLogger(__name__)

TargetHandler = Callable[[Request], Response]
GitHandler = Callable[[Request], Response]
# Git from inside a tenant's namespace: (request, that tenant), repository tokens only.
SandboxGitHandler = Callable[[Request, str], Response]
_PUBLIC = ("/v1/health", "/v1/openapi.json")
# The one `/v1/tenants` route a tenant's key may call: its own usage.
_OWN_USAGE = re.compile(r"^/v1/tenants/(\d{12})/usage/?$")
# The admin's areas: tenants (and what hangs under them) and the platform-wide views.
_ADMIN = ("/v1/tenants", "/v1/admin/")


def with_request_id(response: Response) -> Response:
    """Every AWS response names its request (`x-amzn-RequestId`; SDKs show it in errors
    and ResponseMetadata). An Invoke's is its invocation's, as in the function's logs."""
    if not any(name.lower() == REQUEST_ID_HEADER for name in response.headers):
        response.headers[REQUEST_ID_HEADER] = str(uuid.uuid4())
    return response


class Application:
    def __init__(
        self,
        *,
        router: Router,
        v1: Router,
        auth: Authenticator,
        targets: dict[str, TargetHandler],
        git: GitHandler,
        max_request_bytes: int,
        sandbox_git: SandboxGitHandler | None = None,
        metrics: Callable[[Request], Response] | None = None,
        auditor: Auditor | None = None,
    ) -> None:
        self.auditor = auditor
        # Set after construction: the console calls back into this application.
        self.console: Callable[[Request], Response] | None = None
        self.router = router
        self.v1 = v1
        self.auth = auth
        # awsJson services (CloudWatch Logs) post to "/" and name the operation in
        # X-Amz-Target; they are dispatched by that header's prefix.
        self.targets = targets
        self.git = git
        self.sandbox_git = sandbox_git
        self.max_request_bytes = max_request_bytes
        self.metrics = metrics

    def handle(self, request: Request) -> Response:
        if self.console is not None and (
            request.path == "/console" or request.path.startswith("/console/")
        ):
            if self._too_large(request):
                return Response(413, b"Request too large.\n", {"content-type": "text/plain"})
            try:
                return self.console(request)
            except Exception as exc:  # never a stack trace to the browser
                log.exception("console request failed")
                return text_error(exc)
        if self.auditor is None:
            return self._handle(request)
        return self.auditor.around(request, lambda: self._handle(request))

    def _handle(self, request: Request) -> Response:
        if request.path.startswith("/git/"):
            # Pushes are bigger than API requests; the Git handler bounds them itself.
            try:
                return self.git(request)
            except Exception as exc:
                return text_error(exc)
        if request.path == "/metrics" and self.metrics is not None:
            return self.metrics(request)
        if request.path.startswith("/v1/") or request.path == "/v1":
            return self._v1(request)
        return with_request_id(self._lambda(request))

    def call_as(
        self,
        tenant: str | None,
        method: str,
        path: str,
        *,
        query: dict[str, list[str]] | None = None,
        body: bytes = b"",
        target: str | None = None,
        access_key_id: str = "",
        source_address: str = "",
        headers: dict[str, str] | None = None,
    ) -> Response:
        """An in-process call as an already authenticated principal: `tenant`, or the
        admin when None. Only the signature check is skipped: routing, validation,
        tenancy and error shapes are the API's own, so the console can show nothing and
        do nothing the API would refuse. The admin reaches `/v1/tenants...` and
        `/v1/admin/...` only, a tenant its own usage and everything else (the same policy
        as `Authenticator`). `target` names a CloudWatch Logs operation
        (`Logs_20140328.FilterLogEvents`). A mutating call is audited like the API's own,
        under the session's key id and the browser's address. `headers` (lower-case
        names) are the request's own, such as Invoke's `x-amz-invocation-type`.
        """
        request = Request(method=method, path=path, query=query or {}, body=body)
        request.headers.update(headers or {})
        request.headers["content-type"] = "application/json"
        request.access_key_id = access_key_id
        request.principal_kind = PrincipalKind.ADMIN if tenant is None else PrincipalKind.TENANT_KEY
        request.source_address = source_address
        if self.auditor is None:
            return self._call_as(request, tenant, path, target)
        return self.auditor.around(request, lambda: self._call_as(request, tenant, path, target))

    def _call_as(
        self, request: Request, tenant: str | None, path: str, target: str | None
    ) -> Response:
        own_usage = _OWN_USAGE.match(path)
        if tenant is not None and own_usage and request.method == "GET":
            if own_usage.group(1) != tenant:  # as Authenticator.v1_admin_or_tenant
                return v1_json_error(
                    403, "AccessDeniedException", "Only the admin or the tenant may read this."
                )
        elif (tenant is None) != path.startswith(_ADMIN):
            return v1_json_error(403, "AccessDeniedException", "Not allowed for this principal.")
        request.tenant = tenant or ""
        if target is not None:
            request.headers["x-amz-target"] = target
            handler = self.targets.get(target.split(".", 1)[0])
            if handler is None or tenant is None:
                return aws_error(400, "UnknownOperationException", f"Unknown target {target}")
            return handler(request)
        is_v1 = path.startswith("/v1/")
        try:
            route, _known = (self.v1 if is_v1 else self.router).match(request)
            if route is None:
                return v1_json_error(404, "NotFound", f"No route for {path}")
            return route(request)
        except Exception as exc:
            return v1_error(exc) if is_v1 else lambda_error(exc)

    def handle_sandbox(self, request: Request, tenant: str) -> Response:
        """A request to the endpoint inside `tenant`'s network namespace: only the
        routes its sandbox key may call (checkpoints; minting a Git token for its
        tenant's repository), and Git with such a token; anything else is AccessDenied."""
        request.source_address = request.source_address or f"sandbox:{tenant}"
        if self.auditor is None:
            return self._handle_sandbox(request, tenant)
        return self.auditor.around(request, lambda: self._handle_sandbox(request, tenant))

    def _handle_sandbox(self, request: Request, tenant: str) -> Response:
        if request.path.startswith("/git/") and self.sandbox_git is not None:
            try:
                return self.sandbox_git(request, tenant)
            except Exception as exc:
                return text_error(exc)
        if request.path.startswith("/v1/"):
            return self._sandbox_v1(request, tenant)
        try:
            if self._too_large(request):
                return self._too_large_error()
            self.auth.sandbox_only(request, tenant)
            route, _ = self.router.match(request)
            if route is None:
                raise AccessDenied("This operation is not available from a sandbox.")
            request.tenant = tenant
            return with_request_id(route(request))
        except Exception as exc:
            return with_request_id(lambda_error(exc))

    def _sandbox_v1(self, request: Request, tenant: str) -> Response:
        try:
            if self._too_large(request):
                return v1_json_error(413, "RequestTooLargeException", "Request too large.")
            self.auth.sandbox_v1(request, tenant)
            route, _ = self.v1.match(request)
            if route is None:
                raise AccessDenied("This operation is not available from a sandbox.")
            request.tenant = tenant
            return route(request)
        except Exception as exc:
            return v1_error(exc)

    def _too_large(self, request: Request) -> bool:
        return len(request.body) > self.max_request_bytes

    def _too_large_error(self) -> Response:
        return aws_error(
            413,
            "RequestTooLargeException",
            f"Request must be smaller than {self.max_request_bytes} bytes.",
        )

    def _lambda(self, request: Request) -> Response:
        try:
            if self._too_large(request):
                return self._too_large_error()
            target = request.header("x-amz-target")
            if target and request.method == "POST" and request.path in ("/", ""):
                service = target.split(".", 1)[0]
                handler = self.targets.get(service)
                if handler is None:
                    return aws_error(400, "UnknownOperationException", f"Unknown target {target}")
                request.tenant = self.auth.lambda_tenant(request)
                return handler(request)
            route, known = self.router.match(request)
            # Authenticate before telling 404 from 405: an anonymous caller learns nothing.
            request.tenant = self.auth.lambda_tenant(request)
            if route is None:
                if known:
                    return aws_error(405, "MethodNotAllowedException", "Method not allowed.")
                return aws_error(404, "UnknownOperationException", f"No route for {request.path}")
            return route(request)
        except Exception as exc:  # the one place errors become responses
            return lambda_error(exc)

    def _v1(self, request: Request) -> Response:
        try:
            if self._too_large(request):
                return v1_json_error(
                    413,
                    "RequestTooLargeException",
                    f"Request must be smaller than {self.max_request_bytes} bytes.",
                )
            route, known = self.v1.match(request)
            public = request.path.rstrip("/") in _PUBLIC
            own_usage = _OWN_USAGE.match(request.path)
            if not public:
                if own_usage and request.method == "GET":
                    self.auth.v1_admin_or_tenant(request, own_usage.group(1))
                elif request.path.startswith(_ADMIN):
                    self.auth.v1_admin(request)
                else:
                    request.tenant = self.auth.v1_tenant(request)
            if route is None:
                if known:
                    return v1_json_error(405, "MethodNotAllowed", "Method not allowed.")
                return v1_json_error(404, "NotFound", f"No route for {request.path}")
            return route(request)
        except Exception as exc:
            return v1_error(exc)
