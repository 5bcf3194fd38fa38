"""`ApproximateRunningDurableExecutions` survives a restart of `treadle dev`: the new
process counts what the stores hold as RUNNING, per tenant and function, then moves."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, http, new_tenant
from support.workflows import WORKFLOW

TOKEN = "gauge-scrape-token-0123456789"
TENANT = "123456789012"
GAUGE = re.compile(
    r'^ApproximateRunningDurableExecutions\{function="([^"]+)",tenant="(\d+)"\} (\S+)$'
)


@pytest.fixture
def server(tmp_path: Any) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data", env={"TREADLE_METRICS_TOKEN": TOKEN})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def gauge(server: ServerProcess) -> dict[tuple[str, str], float]:
    status, _, body = http(server, "GET", "/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert status == 200
    found = {}
    for line in body.decode().splitlines():
        match = GAUGE.match(line)
        if match:
            found[(match[2], match[1])] = float(match[3])
    return found


def _park(lam: Any, function: str, name: str) -> str:
    """An execution left RUNNING on its callback."""
    out = lam.invoke(
        FunctionName=function,
        InvocationType="Event",
        DurableExecutionName=name,
        Payload=json.dumps({"n": 1, "callback": True}),
    )
    return str(out["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])


def test_the_running_gauge_is_right_after_a_kill_and_restart(server: ServerProcess) -> None:
    lam = client(server)
    deploy(lam, "held", {"handler.py": WORKFLOW})
    deploy(lam, "quick", {"handler.py": WORKFLOW})
    first = _park(lam, "held", "h1")
    _park(lam, "held", "h2")
    done = lam.invoke(FunctionName="quick", Payload=json.dumps({"n": 2}))
    assert json.loads(done["Payload"].read()) == {"first": 4}
    other, keys = new_tenant(server, "gauged")
    theirs = client(server, credentials=keys)
    deploy(theirs, "held", {"handler.py": WORKFLOW})
    _park(theirs, "held", "o1")
    want = {(TENANT, "held"): 2.0, (other, "held"): 1.0}
    assert {k: v for k, v in gauge(server).items() if v} == want

    server.kill()  # kill -9: nothing is flushed on the way out
    server.start()
    after = gauge(server)
    assert {k: v for k, v in after.items() if v} == want
    assert after.get((TENANT, "quick"), 0.0) == 0.0

    # It moves from there: a stop takes one off, a new start adds one.
    lam = client(server)
    lam.stop_durable_execution(DurableExecutionArn=first)
    _park(lam, "quick", "q1")
    moved = {k: v for k, v in gauge(server).items() if v}
    assert moved == {(TENANT, "held"): 1.0, (TENANT, "quick"): 1.0, (other, "held"): 1.0}
