"""Tenant code sends events to its own tenant's executions (`treadle_workflows.send_event`,
signed with its sandbox key), and to nothing of another tenant's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, new_tenant

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
SENDER = """
from treadle_workflows import EventRefused, send_event


def handler(event, context):
    try:
        if "arn" in event:
            send_event("approval", {"by": event["by"]}, execution_arn=event["arn"])
        else:
            send_event("approval", {"by": event["by"]}, function="approval",
                       execution_name=event["name"])
        return "sent"
    except EventRefused as refused:
        return refused.status
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("events-code") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _send(lam: Any, event: dict[str, Any]) -> Any:
    out = lam.invoke(FunctionName="sender", Payload=json.dumps(event))
    assert "FunctionError" not in out, out["Payload"].read()
    return json.loads(out["Payload"].read())


def _result(lam: Any, arn: str) -> Any:
    deadline = time.monotonic() + 30
    while (ex := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] == "RUNNING":
        assert time.monotonic() < deadline, "the waiting execution never ended"
        time.sleep(0.1)
    assert ex["Status"] == "SUCCEEDED", ex
    return json.loads(ex["Result"])


def test_tenant_code_sends_events_to_its_own_executions_only(server: ServerProcess) -> None:
    a, b = client(server), client(server, credentials=new_tenant(server, "events-b")[1])
    approval = (EXAMPLES / "approval" / "handler.py").read_text()
    for lam in (a, b):
        deploy(lam, "approval", {"handler.py": approval})
        deploy(lam, "sender", {"handler.py": SENDER}, durable=False)
    started = []
    for name in ("by-name", "by-arn"):
        resp = a.invoke(
            FunctionName="approval",
            InvocationType="Event",
            DurableExecutionName=name,
            Payload=json.dumps({"id": name}),
        )
        started.append(resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])
    by_name, by_arn = started
    # B's code, addressing A's executions: not found, whichever way (and nothing sent).
    assert _send(b, {"by": "mallory", "arn": by_arn}) == 404
    assert _send(b, {"by": "mallory", "name": "by-name"}) == 404
    # A's code: delivered, by name and by ARN.
    assert _send(a, {"by": "ann", "name": "by-name"}) == "sent"
    assert _send(a, {"by": "bob", "arn": by_arn}) == "sent"
    assert _result(a, by_name) == {"order": "by-name", "approved_by": "ann"}
    assert _result(a, by_arn) == {"order": "by-arn", "approved_by": "bob"}
    # Closed now: the next event is refused as on /v1.
    assert _send(a, {"by": "late", "arn": by_arn}) == 409
