"""Tenant code reaches no host service over the network, only its own platform endpoint.

Through a real `treadle dev` as root (CI), tenants A and B deploy the same probe: a
durable function without the SDK, so that it holds the raw envelope. Its handler
tries TCP services the test runs on the host (loopback and the host's own address),
the metadata address 169.254.169.254 and the platform's public API port, then calls
the in-namespace platform endpoint (AWS_ENDPOINT_URL_LAMBDA) with its sandbox key
(and with a leaked tenant key) for what a sandbox must not do, and for what it must:
its own execution's state and a checkpoint.

The egress policy (`/v1/tenants`, admin only) is checked without root; what the
policies other than `none` let through is `test_escape_egress.py`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from support.server import ServerProcess, client, deploy, new_tenant, v1
from treadle.adapters.sandbox import netns
from treadle.api.app import Application
from treadle.api.http import Request, Response
from treadle.api.sandbox_endpoint import MAX_CONNECTIONS, SandboxEndpoints

ROOT = os.geteuid() == 0
needs_netns = pytest.mark.skipif(
    not (ROOT and netns.available()),
    reason="network namespaces need the platform to be root (and a host that allows them)",
)

PROBE = """
import json, os, socket, time
import boto3
from botocore.config import Config


def tcp(host, port):
    started = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=3).close()
        result = "connected"
    except OSError as exc:
        result = type(exc).__name__
    return {"result": result, "seconds": time.monotonic() - started}


def call(lam, op, **params):
    try:
        return {"ok": getattr(lam, op)(**params)}
    except Exception as exc:
        error = getattr(exc, "response", {}).get("Error", {})
        return {"error": error.get("Code") or type(exc).__name__}


def handler(event, context):
    probe = json.loads(event["InitialExecutionState"]["Operations"][0]["ExecutionDetails"]
                       ["InputPayload"])
    arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
    report = {
        "tcp": {name: tcp(host, port) for name, (host, port) in probe["targets"].items()},
        "endpoint": os.environ.get("AWS_ENDPOINT_URL_LAMBDA"),
    }
    config = Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=30)
    lam = boto3.client("lambda", config=config)  # the endpoint and sandbox key of its env
    leaked = boto3.client("lambda", config=config, aws_access_key_id=probe["tenant_key"][0],
                          aws_secret_access_key=probe["tenant_key"][1])
    other = probe["other_arn"]
    report["denied"] = {
        "ListFunctions": call(lam, "list_functions"),
        "CreateFunction": call(lam, "create_function", FunctionName="planted",
                               Runtime="python3.11", Handler="h.h", Code={"ZipFile": b"x"},
                               Role="arn:aws:iam::123456789012:role/r"),
        "GetOtherExecution": call(lam, "get_durable_execution", DurableExecutionArn=other),
        "ListFunctionsWithTenantKey": call(leaked, "list_functions"),
        "OwnStateWithTenantKey": call(leaked, "get_durable_execution_state",
                                      DurableExecutionArn=arn, CheckpointToken=token),
    }
    # Its route is a sandbox's, the execution another tenant's: as from its own API.
    report["other_state"] = call(lam, "get_durable_execution_state", DurableExecutionArn=other,
                                 CheckpointToken=token)
    state = call(lam, "get_durable_execution_state", DurableExecutionArn=arn,
                 CheckpointToken=token)
    step = {"Id": "net-probe", "Type": "STEP", "Action": "SUCCEED", "Payload": '"checked"'}
    checkpoint = call(lam, "checkpoint_durable_execution", DurableExecutionArn=arn,
                      CheckpointToken=token, Updates=[step])
    report["state_types"] = [o["Type"] for o in state.get("ok", {}).get("Operations", [])]
    report["checkpoint"] = {k: v for k, v in checkpoint.items() if k == "error"}
    report["checkpoint_ops"] = [
        (o["Id"], o.get("Status")) for o in
        checkpoint.get("ok", {}).get("NewExecutionState", {}).get("Operations", [])
    ]
    return {"Status": "SUCCEEDED", "Result": json.dumps(report, default=str)}
"""


class _Listener:
    """A TCP service of the host's: counts who got through."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _host_address() -> str | None:
    """The host's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address: str = s.getsockname()[0]
        return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("network") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _probe(lam: Any, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    resp = lam.invoke(FunctionName="netprobe", Payload=json.dumps(event))
    assert "FunctionError" not in resp, resp["Payload"].read()
    arn = resp["DurableExecutionArn"]
    done = lam.get_durable_execution(DurableExecutionArn=arn)
    assert done["Status"] == "SUCCEEDED", done
    return arn, json.loads(done["Result"])


@needs_netns
def test_tenant_code_reaches_only_its_namespace(server: ServerProcess) -> None:
    loopback = _Listener("127.0.0.1")
    anywhere = _Listener("0.0.0.0")
    host = _host_address()
    try:
        _, b_keys = new_tenant(server, "net-b")
        a, b = client(server), client(server, credentials=b_keys)
        deploy(a, "netprobe", {"handler.py": PROBE})
        deploy(b, "netprobe", {"handler.py": PROBE})
        targets: dict[str, tuple[str, int]] = {
            "host_loopback": ("127.0.0.1", loopback.port),
            "host_any_on_loopback": ("127.0.0.1", anywhere.port),
            "metadata": ("169.254.169.254", 80),
            "platform_api": ("127.0.0.1", server.port),
        }
        if host is not None:
            targets["host_address"] = (host, anywhere.port)
        unknown = "arn:aws:lambda:us-east-1:000000000000:function:x:$LATEST/durable-execution/n/i"
        a_arn, a_report = _probe(
            a, {"targets": targets, "other_arn": unknown, "tenant_key": server.credentials()}
        )
        b_arn, b_report = _probe(b, {"targets": targets, "other_arn": a_arn, "tenant_key": b_keys})
        for report in (a_report, b_report):
            for name, got in report["tcp"].items():
                assert got["result"] != "connected", (name, got)
                # Refused or unreachable at once: no route, nothing to time out on.
                assert got["seconds"] < 1.0, (name, got)
            assert report["tcp"]["metadata"]["result"] == "OSError"  # ENETUNREACH
            assert report["endpoint"] == f"http://127.0.0.1:{netns.ENDPOINT_PORT}"
            for name, got in report["denied"].items():
                assert got.get("error") == "AccessDeniedException", (name, got)
            assert report["other_state"] == {"error": "ResourceNotFoundException"}
            assert "EXECUTION" in report["state_types"]
            assert report["checkpoint"] == {}
            assert ("net-probe", "SUCCEEDED") in [tuple(op) for op in report["checkpoint_ops"]]
        assert loopback.accepted == 0 and anywhere.accepted == 0
        # The checkpoint made through B's endpoint is B's execution's, seen from outside.
        history = b.get_durable_execution_history(DurableExecutionArn=b_arn)["Events"]
        assert any(e.get("Name") == "net-probe" or e.get("Id") == "net-probe" for e in history)
        assert a.list_functions()["Functions"][0]["FunctionName"] == "netprobe"
        assert [f["FunctionName"] for f in b.list_functions()["Functions"]] == ["netprobe"]
    finally:
        loopback.close()
        anywhere.close()


@needs_netns
def test_namespaces_are_removed_when_the_platform_stops(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    srv = ServerProcess(tmp_path_factory.mktemp("netns-close") / "data")
    srv.start()
    try:
        lam = client(srv)
        deploy(lam, "netprobe", {"handler.py": PROBE})  # makes the tenant's namespace
        bound = srv.data_dir / "sandbox" / "netns"
        assert [p.name for p in bound.iterdir()] == [
            lam.list_functions()["Functions"][0]["FunctionArn"].split(":")[4]
        ]
    finally:
        srv.stop()
    assert str(bound) not in Path("/proc/self/mountinfo").read_text()
    assert not any(bound.iterdir())


# -- the egress policy: the admin's to set ---------------------------------------------


def test_egress_policy_is_set_by_the_admin_only(server: ServerProcess) -> None:
    admin = server.credentials("treadle-admin")
    account, keys = new_tenant(server, "egress")
    path = f"/v1/tenants/{account}"
    status, body = v1(server, "GET", path, credentials=admin)
    assert status == 200 and body["egress"] == "none"  # the default
    status, body = v1(server, "PATCH", path, {"egress": "none"}, credentials=admin)
    assert status == 200 and body["egress"] == "none"
    # A tenant cannot loosen (nor read) its own policy.
    for credentials in (keys, server.credentials()):
        status, body = v1(server, "PATCH", path, {"egress": "all"}, credentials=credentials)
        assert status == 403, body
    status, body = v1(server, "GET", "/v1/tenants", credentials=admin)
    assert {t["accountId"]: t["egress"] for t in body["tenants"]}[account] == "none"


@pytest.mark.parametrize(
    "policy",
    ["some", [], ["example.com"], ["10.0.0.1/8"], ["host:0"], ["host:70000"], ["a b:1"], 5],
)
def test_malformed_policies_are_refused(server: ServerProcess, policy: Any) -> None:
    admin = server.credentials("treadle-admin")
    account, _ = new_tenant(server, "egress-bad")
    status, body = v1(
        server, "PATCH", f"/v1/tenants/{account}", {"egress": policy}, credentials=admin
    )
    assert status == 400, body
    assert "cannot be enforced" not in body["error"]["message"]


# -- the endpoint server: bounded by tenant ----------------------------------------------


class _App:
    max_request_bytes = 1024

    def handle_sandbox(self, request: Request, tenant: str) -> Response:
        return Response.json({"tenant": tenant, "path": request.path})


def _response(conn: socket.socket) -> tuple[int, bytes]:
    response = http.client.HTTPResponse(conn)
    response.begin()
    return response.status, response.read()


def test_endpoint_serves_a_bounded_number_of_connections() -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    stop = SandboxEndpoints(cast(Application, _App()))("123456789012", listening)
    held: list[socket.socket] = []
    try:
        held = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(MAX_CONNECTIONS)]
        held[0].sendall(b"GET /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n")
        assert _response(held[0]) == (200, b'{"tenant":"123456789012","path":"/x"}')
        surplus = socket.create_connection(("127.0.0.1", port), 5)
        held.append(surplus)
        surplus.sendall(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        assert surplus.recv(4096) == b""  # closed unanswered: all slots are taken
        held[1].sendall(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 5000\r\n\r\n")
        assert _response(held[1])[0] == 413
    finally:
        for conn in held:
            conn.close()
        stop()
