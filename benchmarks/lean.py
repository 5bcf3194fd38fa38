"""A lean load client: Lambda's asynchronous Invoke and callback answers, SigV4-signed by
botocore, over one kept connection.

boto3 spends ~1.8 ms of CPU per call (its request pipeline: parameter validation,
serialisation, event hooks, response parsing), on the same two cores as the server it
measures. The start workloads (W2, W3s, W3e, W4) and W3e's answers would then measure
the client as much as the platform. This client sends the same requests (same paths,
same headers, the same SigV4 signature made by botocore's own signer) without the
pipeline around them; the server does exactly the work it does for boto3.
`--client boto3` keeps the old one.
"""

from __future__ import annotations

import http.client
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ARN_HEADER = "x-amz-durable-execution-arn"


class InvokeError(Exception):
    pass


class LeanInvoker:
    """One connection, used by one thread at a time (each client thread has its own)."""

    def __init__(self, url: str, key_id: str, secret: str, region: str) -> None:
        parts = urlsplit(url)
        self._url = url.rstrip("/")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._signer = SigV4Auth(Credentials(key_id, secret), "lambda", region)
        self._conn: http.client.HTTPConnection | None = None

    def start(self, function: str, body: bytes) -> str:
        """Invoke `function` with InvocationType=Event; the new execution's ARN."""
        path = f"/2015-03-31/functions/{quote(function, safe='')}/invocations"
        response = self._call(path, body, {"X-Amz-Invocation-Type": "Event"}, 202)
        arn = response.getheader(ARN_HEADER)
        if not arn:
            raise InvokeError("no execution ARN in the answer")
        return arn

    def succeed_callback(self, callback_id: str, result: bytes) -> None:
        """SendDurableExecutionCallbackSuccess."""
        path = f"/2025-12-01/durable-execution-callbacks/{quote(callback_id, safe='')}/succeed"
        self._call(path, result, {}, 200)

    def _call(
        self, path: str, body: bytes, headers: dict[str, str], expect: int
    ) -> http.client.HTTPResponse:
        request = AWSRequest(
            method="POST",
            url=self._url + path,
            data=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        self._signer.add_auth(request)
        signed: dict[str, Any] = dict(request.headers.items())
        conn = self._connection()
        try:
            conn.request("POST", path, body=body, headers=signed)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.close()  # a new connection for the next call, as boto3's pool would
            raise
        if response.status != expect:
            raise InvokeError(f"HTTP {response.status}: {payload[:200]!r}")
        return response

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=120)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
