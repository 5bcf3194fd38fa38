"""SigV4 verification against requests as boto3 really sends them.

The requests are captured on the wire: boto3 talks to a tiny local HTTP server that
records the raw request line, headers and body, so what is verified is byte for byte
what urllib3 put on the socket (not botocore's idea of it). Each is then turned into
our `Request` the way the ASGI adapter does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from treadle.api.errors import classify
from treadle.api.http import Request
from treadle.tenancy.errors import (
    AuthError,
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    RateExceeded,
    ReplayedRequest,
    SignatureExpired,
    UnrecognizedClient,
)
from treadle.tenancy.ports import KeySecret
from treadle.tenancy.replay import ReplayGuard
from treadle.tenancy.sigv4 import parse_signature, release_replay, verify_sigv4
from treadle.tenancy.sigv4_canonical import canonical_request, canonical_uri

KEY_ID = "AKIAABCDEFGHIJKLMNOP"
SECRET = "s3cretS3cretS3cretS3cretS3cretS3cret0000"
TENANT = "123456789012"
ARN = f"arn:aws:lambda:us-east-1:{TENANT}:function:orders:$LATEST/durable-execution/run-1/7f3a"


def lookup(key_id: str) -> KeySecret | None:
    return KeySecret(TENANT, SECRET) if key_id == KEY_ID else None


class _Capture(BaseHTTPRequestHandler):
    captured: list[Request]

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        raw_path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.captured.append(Request.build(self.command, raw_path, query, headers, body))
        payload = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def wire() -> Iterator[tuple[str, list[Request]]]:
    captured: list[Request] = []
    handler = type("Capture", (_Capture,), {"captured": captured})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", captured
    server.shutdown()
    server.server_close()


def _client(endpoint: str, service: str = "lambda", secret: str = SECRET) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


CALLS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "invoke": ("lambda", lambda c: c.invoke(FunctionName="orders", Payload=b'{"n": 1}')),
    "invoke_arn": (
        "lambda",
        lambda c: c.invoke(
            FunctionName=f"arn:aws:lambda:us-east-1:{TENANT}:function:orders:7",
            InvocationType="Event",
            Payload=b"{}",
        ),
    ),
    "checkpoint": (
        "lambda",
        lambda c: c.checkpoint_durable_execution(
            DurableExecutionArn=ARN,
            CheckpointToken="tok/+=",
            Updates=[{"Id": "1", "Type": "STEP", "Action": "START"}],
        ),
    ),
    "history": (
        "lambda",
        lambda c: c.get_durable_execution_history(
            DurableExecutionArn=ARN, MaxItems=10, Marker="a b/c+d=é&x", IncludeExecutionData=True
        ),
    ),
    "list_by_function": (
        "lambda",
        lambda c: c.list_durable_executions_by_function(
            FunctionName="orders",
            Statuses=["SUCCEEDED", "FAILED", "RUNNING"],
            StartedAfter=1_700_000_000,
        ),
    ),
    "callback_success": (
        "lambda",
        lambda c: c.send_durable_execution_callback_success(
            CallbackId="cb/id+with=odd:chars", Result=b"\x00raw \xffbytes"
        ),
    ),
    "logs": (
        "logs",
        lambda c: c.put_log_events(
            logGroupName="/aws/lambda/orders",
            logStreamName="s",
            logEvents=[{"timestamp": 1, "message": "m"}],
        ),
    ),
}


def _send(wire: tuple[str, list[Request]], name: str, secret: str = SECRET) -> Request:
    endpoint, captured = wire
    service, call = CALLS[name]
    captured.clear()
    call(_client(endpoint, service, secret))
    assert len(captured) == 1
    return captured[0]


def _signed_ms(request: Request) -> int:
    return parse_epoch_ms(request.headers["x-amz-date"])


def parse_epoch_ms(stamp: str) -> int:
    import calendar

    return calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")) * 1000


def _verify(request: Request, now_ms: int | None = None, **kw: Any) -> tuple[str, str]:
    kw.setdefault("replay_guard", ReplayGuard())
    now = _signed_ms(request) if now_ms is None else now_ms
    return verify_sigv4(request, lookup, now, **kw)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_boto3_requests_verify_with_the_right_secret(
    wire: tuple[str, list[Request]], name: str
) -> None:
    request = _send(wire, name)
    assert _verify(request, int(time.time() * 1000)) == (TENANT, KEY_ID)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_wrong_secret_is_refused_with_awss_message(
    wire: tuple[str, list[Request]], name: str
) -> None:
    request = _send(wire, name, secret="wrong" + SECRET[5:])
    with pytest.raises(InvalidSignature) as err:
        _verify(request)
    assert classify(err.value)[:2] == (403, "InvalidSignatureException")
    assert err.value.message.startswith(
        "The request signature we calculated does not match the signature you provided."
    )


def test_the_arn_path_is_double_encoded_like_botocore(wire: tuple[str, list[Request]]) -> None:
    request = _send(wire, "checkpoint")
    assert "arn%3Aaws%3Alambda" in request.path and "%2Fdurable-execution%2F" in request.path
    assert "arn%253Aaws%253Alambda" in canonical_uri(request.path)
    assert "%252Fdurable-execution%252F" in canonical_uri(request.path)


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_aws_cli_requests_verify(wire: tuple[str, list[Request]], tmp_path: Path) -> None:
    endpoint, captured = wire
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    result = f"fileb://{tmp_path / 'result'}"
    (tmp_path / "result").write_bytes(b"\x00raw\xff")
    commands = [
        ["get-durable-execution-history", "--durable-execution-arn", ARN, "--reverse-order"],
        ["send-durable-execution-callback-success", "--callback-id", "cb/+=x", "--result", result],
    ]
    for command in commands:
        captured.clear()
        subprocess.run(
            ["aws", "lambda", *command, "--endpoint-url", endpoint],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        assert len(captured) == 1
        assert _verify(captured[0], int(time.time() * 1000)) == (TENANT, KEY_ID)


def test_an_unknown_key_is_an_unrecognized_client(wire: tuple[str, list[Request]]) -> None:
    request = _send(wire, "invoke")
    with pytest.raises(UnrecognizedClient) as err:
        verify_sigv4(request, lambda _k: None, _signed_ms(request), replay_guard=None)
    assert classify(err.value)[:2] == (403, "UnrecognizedClientException")
    assert err.value.message == "The security token included in the request is invalid."


def test_clock_skew_is_accepted_up_to_the_limit_both_ways(
    wire: tuple[str, list[Request]],
) -> None:
    request = _send(wire, "history")
    signed = _signed_ms(request)
    for now in (signed - 300_000, signed + 300_000):
        assert _verify(request, now) == (TENANT, KEY_ID)
    with pytest.raises(SignatureExpired, match=r"^Signature expired: \d{8}T\d{6}Z is now earlier"):
        _verify(request, signed + 301_000)
    with pytest.raises(SignatureExpired, match=r"^Signature not yet current: "):
        _verify(request, signed - 301_000)
    with pytest.raises(SignatureExpired):
        _verify(request, signed + 61_000, max_skew_s=60)


def test_a_wrong_date_is_refused(wire: tuple[str, list[Request]]) -> None:
    request = _send(wire, "invoke")
    stamp = request.headers["x-amz-date"]
    later = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(_signed_ms(request) / 1000 + 1))
    moved = replace(request, headers={**request.headers, "x-amz-date": later})
    with pytest.raises(InvalidSignature, match="does not match the signature"):
        _verify(moved)
    next_day = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(_signed_ms(request) / 1000 + 86400))
    other_day = replace(request, headers={**request.headers, "x-amz-date": next_day})
    with pytest.raises(InvalidSignature, match="Date in Credential scope does not match"):
        _verify(other_day, parse_epoch_ms(next_day))
    assert stamp  # the original still verifies
    assert _verify(request)


@pytest.mark.parametrize(
    ("name", "tamper"),
    [
        ("checkpoint", lambda r: replace(r, body=r.body.replace(b"START", b"SUCCEED"))),
        ("callback_success", lambda r: replace(r, body=r.body + b"!")),
        ("checkpoint", lambda r: replace(r, path=r.path.replace("run-1", "run-2"))),
        ("invoke", lambda r: replace(r, method="PUT")),
        ("history", lambda r: replace(r, query={**r.query, "MaxItems": ["1000"]})),
        ("history", lambda r: replace(r, query={**r.query, "Extra": ["1"]})),
        ("list_by_function", lambda r: replace(r, query={**r.query, "Statuses": ["RUNNING"]})),
        (
            "invoke_arn",
            lambda r: replace(r, headers={**r.headers, "x-amz-invocation-type": "RequestResponse"}),
        ),
        ("invoke", lambda r: replace(r, headers={**r.headers, "host": "evil.example:80"})),
        (
            "logs",
            lambda r: replace(r, headers={**r.headers, "x-amz-target": "Logs.DeleteLogGroup"}),
        ),
    ],
)
def test_a_tampered_request_is_refused(
    wire: tuple[str, list[Request]], name: str, tamper: Callable[[Request], Request]
) -> None:
    request = _send(wire, name)
    with pytest.raises(InvalidSignature, match="does not match the signature"):
        _verify(tamper(request))


def test_an_unsigned_x_amz_header_cannot_be_slipped_in(wire: tuple[str, list[Request]]) -> None:
    request = _send(wire, "invoke")
    injected = replace(request, headers={**request.headers, "x-amz-log-type": "Tail"})
    with pytest.raises(InvalidSignature, match="headers present in the request which were not"):
        _verify(injected)
    # What AWS front doors add after signing is tolerated.
    proxied = replace(request, headers={**request.headers, "x-amz-cf-id": "abc"})
    assert _verify(proxied)


def test_a_replayed_request_is_refused(wire: tuple[str, list[Request]]) -> None:
    request = _send(wire, "checkpoint")
    guard = ReplayGuard()
    now = _signed_ms(request)
    assert _verify(request, now, replay_guard=guard) == (TENANT, KEY_ID)
    with pytest.raises(ReplayedRequest) as err:
        _verify(request, now + 1000, replay_guard=guard)
    assert classify(err.value)[:2] == (403, "InvalidSignatureException")
    # Once the window has passed the entry is gone, and the date refuses it instead.
    with pytest.raises(SignatureExpired):
        _verify(request, now + 301_000, replay_guard=guard)
    guard.check_and_record(TENANT, KEY_ID, "other", now + 900_000, now + 301_000)
    assert len(guard) == 1  # the next record purged the stale entry


def _same_second_pair(wire: tuple[str, list[Request]], name: str) -> tuple[Request, Request]:
    for _ in range(5):  # the pair may straddle a second boundary; try again then
        first, second = _send(wire, name), _send(wire, name)
        if first.headers["x-amz-date"] == second.headers["x-amz-date"]:
            return first, second
    raise AssertionError("could not send two calls within one second")


def test_botocore_repeats_signatures_within_one_second(wire: tuple[str, list[Request]]) -> None:
    # The known limit of replay refusal (see treadle.tenancy.sigv4): botocore signs no
    # per-call nonce, so two identical calls in one second are indistinguishable.
    first, second = _same_second_pair(wire, "history")
    assert "amz-sdk-invocation-id" not in parse_signature(first).signed_headers
    assert first.headers["amz-sdk-invocation-id"] != second.headers["amz-sdk-invocation-id"]
    assert parse_signature(first).signature == parse_signature(second).signature
    guard = ReplayGuard()
    _verify(first, replay_guard=guard)
    with pytest.raises(ReplayedRequest):
        _verify(second, replay_guard=guard)
    # Calls that differ in anything signed (here the body's ClientToken) never collide.
    third, fourth = _same_second_pair(wire, "checkpoint")
    _verify(third, replay_guard=guard)
    _verify(fourth, replay_guard=guard)


def test_a_released_request_can_be_retried(wire: tuple[str, list[Request]]) -> None:
    # botocore retries a 429/5xx with the same signature when within the same second.
    request = _send(wire, "invoke")
    guard = ReplayGuard()
    tenant, _ = _verify(request, replay_guard=guard)
    release_replay(tenant, request, guard)
    assert _verify(request, replay_guard=guard)
    with pytest.raises(ReplayedRequest):
        _verify(request, replay_guard=guard)
    release_replay(tenant, replace(request, headers={}), guard)  # unsigned: ignored


def test_refused_requests_are_not_remembered(wire: tuple[str, list[Request]]) -> None:
    request = _send(wire, "invoke")
    guard = ReplayGuard()
    with pytest.raises(UnrecognizedClient):
        verify_sigv4(request, lambda _k: None, _signed_ms(request), replay_guard=guard)
    assert len(guard) == 0
    assert _verify(request, replay_guard=guard)


def test_the_replay_memory_is_bounded_per_tenant() -> None:
    guard = ReplayGuard(max_per_tenant=2)
    guard.check_and_record("t1", "k", "s1", 10_000, 0)
    guard.check_and_record("t1", "k", "s2", 20_000, 0)
    with pytest.raises(RateExceeded) as err:
        guard.check_and_record("t1", "k", "s3", 20_000, 0)
    assert classify(err.value)[:2] == (429, "TooManyRequestsException")
    assert err.value.retry_after_s == 10
    guard.check_and_record("t2", "k2", "s1", 20_000, 0)  # another tenant is unaffected
    guard.check_and_record("t1", "k", "s3", 20_000, 10_001)  # s1 expired: room again
    guard.check_and_record("t3", "k3", "s", 70_000, 60_500)  # sweeps idle windows
    assert len(guard) == 1


def test_missing_and_malformed_signatures(wire: tuple[str, list[Request]]) -> None:
    request = _send(wire, "invoke")
    bare = replace(
        request, headers={k: v for k, v in request.headers.items() if k != "authorization"}
    )
    with pytest.raises(MissingAuthenticationToken) as missing:
        _verify(bare)
    assert classify(missing.value)[:2] == (403, "MissingAuthenticationTokenException")
    auth = request.headers["authorization"]
    for bad in (
        "AWS AKIAABCDEFGHIJKLMNOP:c2lnbmF0dXJl",
        auth.replace("Signature=", "Sig="),
        auth.replace("/aws4_request", "/aws5_request"),
        auth.replace("SignedHeaders=", "SignedHeaders=Host;"),
    ):
        with pytest.raises(IncompleteSignature) as err:
            _verify(replace(request, headers={**request.headers, "authorization": bad}))
        assert classify(err.value)[:2] == (400, "IncompleteSignatureException")
    undated = {k: v for k, v in request.headers.items() if k != "x-amz-date"}
    with pytest.raises(IncompleteSignature, match="'X-Amz-Date' or a 'Date' header"):
        _verify(replace(request, headers=undated), _signed_ms(request))


@pytest.mark.parametrize(
    "change",
    [
        {"authorization": "AWS4-HMAC-SHA256"},
        {"authorization": "AWS4-HMAC-SHA256 Credential=a/b, Credential=c"},
        {"authorization": "AWS4-HMAC-SHA256 Credential==/=/=/=/aws4_request,,"},
        {"x-amz-date": "20240101T000000Z\n"},
        {"x-amz-date": "\u0662\u0660\u0662\u0664\u0660\u0661\u0660\u0661T000000Z"},  # Arabic digits
        {"x-amz-date": "20241399T996199Z"},
        {"x-amz-date": ""},
        {"x-amz-content-sha256": "a" * 64 + "\n"},
        {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
    ],
)
def test_garbage_is_refused_as_an_auth_error(
    wire: tuple[str, list[Request]], change: dict[str, str]
) -> None:
    request = _send(wire, "invoke")
    with pytest.raises(AuthError):
        _verify(replace(request, headers={**request.headers, **change}), int(time.time() * 1000))


@pytest.mark.parametrize(
    "query",
    [
        {"X-Amz-Algorithm": ["AWS4-HMAC-SHA256"]},
        {"X-Amz-Expires": ["\u00b2"]},  # isdigit(), but int() fails
        {"X-Amz-Expires": ["0"]},
        {"X-Amz-Expires": ["604801"]},
        {"X-Amz-Date": ["yesterday"]},
        {"X-Amz-Signature": ["a", "b"]},
    ],
)
def test_garbage_presigned_queries_are_auth_errors(query: dict[str, list[str]]) -> None:
    request = _presigned()
    bad = replace(request, query={**request.query, **query})
    if list(query) == ["X-Amz-Algorithm"]:
        bad = replace(request, query=query)
    with pytest.raises(AuthError):
        verify_sigv4(bad, lookup, int(time.time() * 1000), replay_guard=None)


def test_session_tokens_are_not_ours(wire: tuple[str, list[Request]]) -> None:
    request = _send(wire, "invoke")
    with_token = replace(request, headers={**request.headers, "x-amz-security-token": "FwoG"})
    with pytest.raises(UnrecognizedClient):
        _verify(with_token)


def test_the_service_scope_can_be_restricted(wire: tuple[str, list[Request]]) -> None:
    assert _verify(_send(wire, "invoke"), services={"lambda", "logs"})
    with pytest.raises(InvalidSignature, match="scoped to correct service"):
        _verify(_send(wire, "logs"), services={"lambda"})


# -- requests signed by botocore directly (presigned, Date header, payload header) ----------


def _sign(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[Request, str]:
    """Sign like the lambda client does; return our Request and botocore's canonical request."""
    recorded: list[str] = []

    class Recording(SigV4Auth):
        def canonical_request(self, request: AWSRequest) -> str:
            recorded.append(super().canonical_request(request))
            return recorded[-1]

    aws = AWSRequest(method=method, url=url, data=body, headers=headers or {}, params=params)
    Recording(Credentials(KEY_ID, SECRET), "lambda", "us-east-1").add_auth(aws)
    prepared = aws.prepare()
    parts = urlsplit(prepared.url)
    wire_headers = {k.lower(): v for k, v in prepared.headers.items()}
    wire_headers.setdefault("host", parts.netloc)
    sent = prepared.body or b""
    assert isinstance(sent, bytes)
    request = Request.build(method, parts.path, parts.query, wire_headers, sent)
    return request, recorded[-1]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/2015-03-31/functions/f/invocations", {}),
        ("/a%20b/c%3Ad%2Fe", {"q": "a b", "é": "+/=&", "empty": "", "t~i-l_d.e": "~"}),
        ("/x/./y/../z//w/", {"b": "2", "a": "1", "A": "0"}),
        ("/unicod%C3%A9/%E2%9C%93~", {"k": "v"}),
        ("/", {}),
    ],
)
def test_our_canonical_request_is_botocores(path: str, params: dict[str, str]) -> None:
    request, theirs = _sign("GET", f"http://127.0.0.1:9000{path}", params=params)
    now = parse_epoch_ms(request.headers["x-amz-date"])
    assert verify_sigv4(request, lookup, now, replay_guard=None) == (TENANT, KEY_ID)
    parts = parse_signature(request)
    ours = canonical_request(request, parts, hashlib.sha256(b"").hexdigest())
    assert ours == theirs


def test_the_date_header_may_replace_x_amz_date() -> None:
    request, _ = _sign(
        "POST",
        "http://h.example/2015-03-31/functions/f/invocations",
        body=b"{}",
        headers={"Date": "Mon, 01 Jan 2024 00:00:00 GMT"},
    )
    assert "x-amz-date" not in request.headers
    now = parse_epoch_ms(time.strftime("%Y%m%dT%H%M%SZ"))
    assert verify_sigv4(request, lookup, now, replay_guard=None)


def test_x_amz_content_sha256_must_be_the_bodys() -> None:
    body = b'{"a":1}'
    digest = hashlib.sha256(body).hexdigest()
    url = "http://h.example/2015-03-31/functions/f/invocations"
    good, _ = _sign("POST", url, body=body, headers={"X-Amz-Content-SHA256": digest})
    now = parse_epoch_ms(good.headers["x-amz-date"])
    assert verify_sigv4(good, lookup, now, replay_guard=None)
    with pytest.raises(InvalidSignature, match="x-amz-content-sha256"):
        verify_sigv4(replace(good, body=b'{"a":2}'), lookup, now, replay_guard=None)
    unsigned, _ = _sign(
        "POST", url, body=body, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    )
    with pytest.raises(InvalidSignature):
        verify_sigv4(unsigned, lookup, now, replay_guard=None)
    assert verify_sigv4(unsigned, lookup, now, replay_guard=None, allow_unsigned_payload=True)


def _presigned(expires: int = 60) -> Request:
    client = _client("http://127.0.0.1:9000")
    url = client.generate_presigned_url(
        "get_durable_execution_history",
        Params={"DurableExecutionArn": ARN, "MaxItems": 5, "Marker": "m n"},
        ExpiresIn=expires,
    )
    parts = urlsplit(url)
    return Request.build("GET", parts.path, parts.query, {"host": parts.netloc}, b"")


def test_presigned_urls_verify_expire_and_are_single_use() -> None:
    request = _presigned(expires=60)
    signed = parse_epoch_ms(request.query["X-Amz-Date"][0])
    guard = ReplayGuard()
    assert verify_sigv4(request, lookup, signed + 59_000, replay_guard=guard) == (TENANT, KEY_ID)
    with pytest.raises(ReplayedRequest):
        verify_sigv4(request, lookup, signed + 59_500, replay_guard=guard)
    with pytest.raises(SignatureExpired):
        verify_sigv4(request, lookup, signed + 61_000, replay_guard=None)
    tampered = replace(request, query={**request.query, "MaxItems": ["500"]})
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_sigv4(tampered, lookup, signed, replay_guard=None)
    both = replace(request, headers={**request.headers, "authorization": "AWS4-HMAC-SHA256 x"})
    with pytest.raises(IncompleteSignature, match="Only one auth mechanism"):
        verify_sigv4(both, lookup, signed, replay_guard=None)
