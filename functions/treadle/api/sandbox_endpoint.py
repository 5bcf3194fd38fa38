"""The platform endpoint inside each tenant's network namespace (`sandbox/netns.py`).

Tenant code that bundles its own SDK checkpoints over HTTP to AWS_ENDPOINT_URL_LAMBDA;
in a namespace with loopback only, that is 127.0.0.1:<port> in the namespace, a socket
the platform made there and serves here. Each request goes to the same application
as the public API, restricted to what a sandbox key may call
(`Application.handle_sandbox`): a stolen tenant key, or any other route, gets
AccessDenied even from inside. Git smart HTTP is served here too, for the tenant's
own repository tokens only (which its sandbox key mints at `/v1/repos/{name}/tokens`),
so an agent clones and pushes with egress `none`.

A small threaded HTTP/1.1 server per tenant (stdlib): the SDK's traffic is a few
requests per invocation, and the application is synchronous anyway.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from treadle.api.app import Application
from treadle.api.errors import aws_error
from treadle.api.http import Request, Response

log = logging.getLogger(__name__)


# Connections served at once per tenant (a thread each): tenant code opening more
# cannot take the platform's threads; the surplus is closed at once.
MAX_CONNECTIONS = 64
# Largest Git request body (a push) taken from tenant code, as on the public endpoint.
MAX_GIT_BYTES = 512 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, app: Application, tenant: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock  # listening already, in the tenant's namespace
        self.app = app
        self.tenant = tenant
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses its connection
    server: _Server
    timeout = 60

    def _serve(self) -> None:
        app, length = self.server.app, self.headers.get("content-length") or "0"
        url = urlsplit(self.path)
        # A push is bigger than an API call; git sends a big one chunked.
        limit = MAX_GIT_BYTES if url.path.startswith("/git/") else app.max_request_bytes
        chunked = "chunked" in (self.headers.get("transfer-encoding") or "").lower()
        body = self._chunked(limit) if chunked else None
        if body is None and (chunked or not length.isdigit() or int(length) > limit):
            too_large = f"Request must be smaller than {limit} bytes."
            self._send(aws_error(413, "RequestTooLargeException", too_large), close=True)
            return
        if body is None:
            body = self.rfile.read(int(length))
        headers = {k: v for k, v in self.headers.items()}
        request = Request.build(self.command, url.path, url.query, headers, body)
        self._send(app.handle_sandbox(request, self.server.tenant))

    def _chunked(self, limit: int) -> bytes | None:
        """A chunked body; None if it is malformed or larger than `limit`."""
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return None
            total += size
            if size < 0 or total > limit:
                return None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF after the chunk

    def _send(self, response: Response, *, close: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        if close:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        log.debug("sandbox endpoint: " + format, *args)


class SandboxEndpoints:
    """Serves each tenant's endpoint socket; `netns.TenantNetworks` hands them over."""

    def __init__(self, app: Application) -> None:
        self._app = app

    def __call__(self, tenant: str, sock: socket.socket) -> Callable[[], None]:
        server = _Server(sock, self._app, tenant)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name=f"sandbox-endpoint-{tenant}",
            daemon=True,
        )
        thread.start()

        def stop() -> None:
            server.shutdown()  # returns once serve_forever has
            thread.join(timeout=5)
            with contextlib.suppress(OSError):
                server.server_close()

        return stop
