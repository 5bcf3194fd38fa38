"""`make demo`: start the embedded platform, deliver examples/ through boto3, run them.

Everything goes through the public surface, as a user would: `treadle dev` runs as its
own process, functions are created with `create_function`, executions are driven and
observed with the Lambda durable-execution API.

`TREADLE_BACKEND=aws` runs the same demo on the AWS backend: DynamoDB, S3, SQS and
Lambda at `AWS_ENDPOINT_URL` (LocalStack, a moto server), or, when that is unset, at a
moto server the demo starts itself (moto is a development dependency).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from rich.console import Console
from rich.live import Live
from rich.table import Table

from treadle.payloads import decoded, decoded_payload
from treadle.platform import TENANT_PROFILE
from treadle.settings import ENV_AWS_ENDPOINT_URL, ENV_BACKEND, ENV_STAGE
from treadle.tenancy.credentials import read_profile

# This module lives in the checkout, beside the examples it deploys.
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
console = Console()


def _zip_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(path.rglob("*.py")):
            zf.write(file, file.relative_to(path))
    return buf.getvalue()


def _start_moto() -> tuple[Any, str]:
    """A moto server on a free port, for the AWS backend when no endpoint is given."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise SystemExit(f"set {ENV_AWS_ENDPOINT_URL}, or install moto[server]") from None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server.start()
    return server, f"http://127.0.0.1:{port}"


def _start_server(
    data_dir: Path, env: dict[str, str], server_log: Path
) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "treadle.cli", "dev", "--port", "0", "--data-dir", str(data_dir)]
    with server_log.open("w") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "ready at " in line:
            return proc, line.split("ready at ")[1].split()[0]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.wait(timeout=15)
    _show_server_log(server_log)
    raise SystemExit("treadle dev did not start: its own words are above")


def _show_server_log(server_log: Path, lines: int = 25) -> None:
    """The server's last words, for a demo that failed: the reason is usually there."""
    tail = server_log.read_text(errors="replace").splitlines()[-lines:]
    if tail:
        console.print(f"[yellow]treadle dev said (last {len(tail)} lines of its log):[/]")
        for line in tail:
            console.print(f"  {line}", markup=False, highlight=False)


def _history_table(events: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, expand=False)
    for col in ("#", "event", "operation", "details"):
        table.add_column(col)
    for e in events:
        details: dict[str, Any] = next((v for k, v in e.items() if k.endswith("Details")), {})
        shown = {k: v for k, v in details.items() if k not in ("StartTimestamp", "EndTimestamp")}
        text = json.dumps(decoded(shown), default=str)
        table.add_row(
            str(e["EventId"]),
            e["EventType"],
            e.get("Name") or "",
            text if len(text) < 90 else text[:87] + "...",
        )
    return table


def _run_order(lam: Any) -> dict[str, Any]:
    name = f"order-{int(time.time())}"
    resp = lam.invoke(
        FunctionName="order_workflow",
        InvocationType="Event",
        DurableExecutionName=name,
        Payload=json.dumps({"items": ["book", "lamp"], "amount": 99, "cooling_off_seconds": 2}),
    )
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    console.print(f"started execution [bold]{name}[/]")
    answered = False
    deadline = time.monotonic() + 120
    with Live(console=console, refresh_per_second=8) as live:
        while True:
            events = lam.get_durable_execution_history(DurableExecutionArn=arn, MaxItems=1000)[
                "Events"
            ]
            live.update(_history_table(events, f"{name}: live history"))
            status = lam.get_durable_execution(DurableExecutionArn=arn)["Status"]
            if status != "RUNNING":
                break
            started = [e for e in events if e["EventType"] == "CallbackStarted"]
            if started and not answered:
                callback_id = started[0]["CallbackStartedDetails"]["CallbackId"]
                lam.send_durable_execution_callback_success(
                    CallbackId=callback_id, Result=json.dumps({"approved_by": "demo-manager"})
                )
                answered = True
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not finish in time")
            time.sleep(0.2)
    console.print()
    return lam.get_durable_execution(DurableExecutionArn=arn)  # type: ignore[no-any-return]


def _v1(url: str, keys: dict[str, str], path: str) -> Any:
    """A `/v1` read with the tenant's key pair (HTTP Basic)."""
    pair = f"{keys['aws_access_key_id']}:{keys['aws_secret_access_key']}"
    request = urllib.request.Request(
        url + path, headers={"authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _run_agent(lam: Any, url: str, keys: dict[str, str]) -> bool:
    """examples/agent: memory in a facet, output committed to the session's repository."""
    session = f"s{int(time.time())}"
    tasks = ["read the brief", "draft the plan", "write the report"]
    resp = lam.invoke(
        FunctionName="agent",
        DurableExecutionName=f"agent-{session}",
        Payload=json.dumps({"session": session, "tasks": tasks}),
    )
    body = json.loads(resp["Payload"].read())
    if "FunctionError" in resp:
        console.print(f"[red]agent failed:[/] {body}")
        return False
    console.print(
        f"agent session [bold]{session}[/]: remembers {len(body['memory'])} notes, "
        f"committed {body['commit'][:12]} to [bold]{body['repository']}[/]"
    )
    facets = _v1(url, keys, "/v1/facets")["facets"]
    for facet in facets:
        console.print(f"  facet {facet['name']}: {facet['sizeBytes']} bytes")
    log = _v1(url, keys, f"/v1/repos/{body['repository']}/commits")
    for commit in log.get("commits", [])[:3]:
        console.print(f"  commit {commit.get('sha', '')[:12]} {commit.get('message', '').strip()}")
    return bool(body["memory"] == tasks)


def _what_next() -> None:
    console.print(
        "\n[bold]What next[/]\n"
        "  .venv/bin/treadle dev    run the platform; it prints the line that points\n"
        "                           boto3 and the AWS CLI at it\n"
        "  examples/                workflows written with the official durable SDK\n"
        "  README.md, docs/         git push and deploy, tenants, egress, AWS backend\n"
        "  make test                the test suite"
    )


def main() -> int:
    env = dict(os.environ)
    moto = None
    backend = "embedded platform"
    if env.get(ENV_BACKEND) == "aws":
        if not env.get(ENV_AWS_ENDPOINT_URL):
            moto, env[ENV_AWS_ENDPOINT_URL] = _start_moto()
            # moto takes any key; without one boto3 would look for a profile.
            env.setdefault("AWS_ACCESS_KEY_ID", "demo")
            env.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
        env.setdefault(ENV_STAGE, f"demo{int(time.time()) % 100_000}")
        backend = f"AWS backend (DynamoDB, S3, SQS, Lambda at {env[ENV_AWS_ENDPOINT_URL]})"
    with tempfile.TemporaryDirectory(prefix="treadle-demo-") as tmp:
        server_log = Path(tmp) / "server.log"
        proc, url = _start_server(Path(tmp) / "data", env, server_log)
        ok = False
        try:
            console.print(f"[green]Treadle {backend} at {url}[/]")
            # Sign as the default tenant `treadle dev` made, with the keys it wrote.
            keys = read_profile(Path(tmp) / "data" / "credentials", TENANT_PROFILE) or {}
            lam = boto3.client(
                "lambda",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id=keys["aws_access_key_id"],
                aws_secret_access_key=keys["aws_secret_access_key"],
                config=Config(read_timeout=300),
            )
            for example in sorted(p for p in EXAMPLES.iterdir() if p.is_dir()):
                fn = lam.create_function(
                    FunctionName=example.name,
                    Runtime="python3.11",
                    Role="arn:aws:iam::123456789012:role/demo",
                    Handler="handler.handler",
                    Code={"ZipFile": _zip_dir(example)},
                    Timeout=30,
                    DurableConfig={"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1},
                )
                console.print(f"deployed [bold]{fn['FunctionName']}[/] ({fn['CodeSha256'][:12]})")
            greeting = lam.invoke(FunctionName="greeter", Payload=json.dumps("Treadle"))
            console.print(f"greeter says: {json.loads(greeting['Payload'].read())}")
            final = _run_order(lam)
            console.print(f"order workflow: [bold]{final['Status']}[/]")
            result = decoded_payload(final.get("Result", "null"))
            console.print_json(json.dumps(result, default=str))
            ok = final["Status"] == "SUCCEEDED" and _run_agent(lam, url, keys)
            if ok:
                _what_next()
            return 0 if ok else 1
        finally:
            if not ok:
                _show_server_log(server_log)
            proc.terminate()
            proc.wait(timeout=15)
            if moto is not None:
                moto.stop()


if __name__ == "__main__":
    sys.exit(main())
