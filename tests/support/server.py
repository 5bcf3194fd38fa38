"""Run `treadle dev` in a subprocess, as a user would, and talk to it with boto3."""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from treadle.tenancy.credentials import read_profile

REGION = "us-east-1"


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        *,
        wait_time_scale: float | None = None,
        env: dict[str, str] | None = None,
        module: str = "treadle.cli",
    ) -> None:
        """`module` is what `python -m` runs with the `dev` arguments (a test's own
        wrapper of the CLI, e.g. support.faulty_server)."""
        self.module = module
        self.data_dir = data_dir
        self.wait_time_scale = wait_time_scale
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    def start(self, port: int = 0) -> str:
        cmd = [sys.executable, "-m", self.module, "dev", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--data-dir", str(self.data_dir)]
        if self.wait_time_scale is not None:
            cmd += ["--wait-time-scale", str(self.wait_time_scale)]
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **self.env}
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: see {self.log_path}")
                continue
            if "ready at " in line:
                self.url = line.split("ready at ")[1].split()[0]
                return self.url
        raise RuntimeError("server did not become ready in 60 s")

    def credentials(self, profile: str = "treadle") -> tuple[str, str]:
        """A key pair `treadle dev` wrote to DATA_DIR/credentials (default tenant, or admin)."""
        found = read_profile(self.data_dir / "credentials", profile)
        assert found is not None, f"no profile {profile} in {self.data_dir / 'credentials'}"
        return found["aws_access_key_id"], found["aws_secret_access_key"]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL: nothing gets a chance to flush or clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def client(
    server: ServerProcess,
    service: str = "lambda",
    *,
    credentials: tuple[str, str] | None = None,
    **config: Any,
) -> Any:
    """A boto3 client of the server, signing as its default tenant unless told otherwise."""
    key_id, secret = credentials or server.credentials()
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            **{
                "retries": {"max_attempts": 2, "mode": "standard"},
                "read_timeout": 900,
                "max_pool_connections": 64,
                **config,
            }
        ),
    )


def signed(
    server: ServerProcess,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    credentials: tuple[str, str] | None = None,
    at: datetime.datetime | None = None,
) -> dict[str, str]:
    """The headers of `method path` signed with SigV4, as boto3 would sign them.

    `at` signs as if at that time (botocore reads its clock through one function).
    """
    key_id, secret = credentials or server.credentials()
    request = AWSRequest(method=method, url=server.url + path, data=body, headers=headers or {})
    signer = SigV4Auth(Credentials(key_id, secret), "lambda", REGION)
    if at is None:
        signer.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=at):
            signer.add_auth(request)
    return dict(request.headers.items())


def http(
    server: ServerProcess,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP exchange: (status, lower-case headers, body), errors included."""
    req = urllib.request.Request(
        server.url + path, data=body or None, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def basic(credentials: tuple[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def v1(
    server: ServerProcess,
    method: str,
    path: str,
    payload: Any = None,
    *,
    credentials: tuple[str, str] | None = None,
) -> tuple[int, Any]:
    """A /v1 call with Basic auth (the default tenant's keys unless told otherwise)."""
    headers = basic(credentials or server.credentials())
    body = b""
    if payload is not None:
        body = json.dumps(payload).encode()
        headers["content-type"] = "application/json"
    status, resp_headers, raw = http(server, method, path, body, headers)
    if resp_headers.get("content-type", "").startswith("application/json"):
        return status, json.loads(raw)
    return status, raw


def zip_files(files: dict[str, str]) -> bytes:
    """The same files make the same bytes (a fixed date): deploying them twice, by two
    tenants or across a second boundary, gives one code digest."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, text)
    return buf.getvalue()


def deploy(
    lam: Any,
    name: str,
    files: dict[str, str],
    *,
    handler: str = "handler.handler",
    durable: bool = True,
    timeout: int = 60,
    memory: int = 256,
    **extra: Any,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Role": "arn:aws:iam::123456789012:role/treadle-tenant",
        "Handler": handler,
        "Code": {"ZipFile": zip_files(files)},
        "Timeout": timeout,
        "MemorySize": memory,
    }
    if durable:
        params["DurableConfig"] = {"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1}
    params.update(extra)
    return lam.create_function(**params)  # type: ignore[no-any-return]


def new_tenant(server: ServerProcess, name: str, **quotas: int) -> tuple[str, tuple[str, str]]:
    """A tenant made by the platform admin: its account id and first key pair."""
    body: dict[str, Any] = {"name": name, "quotas": quotas} if quotas else {"name": name}
    admin = server.credentials("treadle-admin")
    status, made = v1(server, "POST", "/v1/tenants", body, credentials=admin)
    assert status == 201, made
    key = made["accessKey"]
    return made["tenant"]["accountId"], (key["accessKeyId"], key["secretAccessKey"])


def raw_execution(lam: Any, arn: str) -> dict[str, Any]:
    """GetDurableExecution's JSON as sent (boto3 drops the fields its model lacks)."""
    seen: list[dict[str, Any]] = []

    def keep(http_response: Any, **_: Any) -> None:
        seen.append(json.loads(http_response.text))

    lam.meta.events.register("after-call.lambda.GetDurableExecution", keep)
    try:
        lam.get_durable_execution(DurableExecutionArn=arn)
    finally:
        lam.meta.events.unregister("after-call.lambda.GetDurableExecution", keep)
    return seen[0]
