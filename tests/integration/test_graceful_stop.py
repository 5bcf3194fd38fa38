"""`treadle dev` stops promptly while requests are held open: a synchronous invoke of a
durable execution waiting for a callback (held up to 50 s) and a long poll of the
status-change stream (up to 20 s) answer at once, and the execution carries on after
the restart. Before, the stop waited for them (and a supervisor's SIGKILL came first).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from support.server import ServerProcess, client, deploy, v1
from support.workflows import WORKFLOW
from treadle.app.executions import SYNC_INVOKE_TIMEOUT_ERROR
from treadle.cli.dev import GRACEFUL_STOP_S


def _callback_id(lam: Any, name: str, deadline_s: float = 30) -> tuple[str, str]:
    """The ARN of execution `name` once it waits for its callback, and the callback's id."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = lam.list_durable_executions_by_function(
            FunctionName="held", DurableExecutionName=name
        )["DurableExecutions"]
        if found:
            arn = found[0]["DurableExecutionArn"]
            events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
            for event in events:
                if event["EventType"] == "CallbackStarted":
                    return arn, event["CallbackStartedDetails"]["CallbackId"]
        time.sleep(0.05)
    raise AssertionError(f"{name} never waited for its callback")


def test_a_stop_ends_held_requests_at_once_and_the_execution_goes_on(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data")
    srv.start()
    try:
        lam = client(srv)
        deploy(lam, "held", {"handler.py": WORKFLOW})
        with ThreadPoolExecutor(2) as pool:
            invoke = pool.submit(
                lam.invoke,
                FunctionName="held",
                Payload=json.dumps({"n": 4, "callback": True}),
                DurableExecutionName="held-1",
            )
            arn, callback = _callback_id(lam, "held-1")
            status, tail = v1(srv, "GET", "/v1/executions/events?start=latest")
            assert status == 200, tail
            cursor = tail["nextCursor"]
            poll = pool.submit(
                v1, srv, "GET", f"/v1/executions/events?cursor={cursor}&waitSeconds=20"
            )
            time.sleep(0.5)  # both are held now
            assert not invoke.done() and not poll.done()
            started = time.monotonic()
            srv.stop()
            stopped_in = time.monotonic() - started
            assert srv.proc is not None and srv.proc.returncode == 0, srv.log_path.read_text()
            # Not the 50 s and 20 s they would have held, nor the graceful stop's limit.
            assert stopped_in < GRACEFUL_STOP_S, stopped_in
            answered = invoke.result(timeout=5)
            polled = poll.result(timeout=5)
        assert answered["FunctionError"] == "Unhandled"
        error = json.loads(answered["Payload"].read())
        assert error["errorType"] == SYNC_INVOKE_TIMEOUT_ERROR
        assert "the platform is stopping" in error["errorMessage"] and arn in error["errorMessage"]
        assert polled[0] == 200 and polled[1]["events"] == [], polled

        srv.start()  # the execution goes on after the restart
        lam = client(srv)
        assert lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
        lam.send_durable_execution_callback_success(CallbackId=callback, Result=b"yes")
        deadline = time.monotonic() + 30
        while (done := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] == "RUNNING":
            assert time.monotonic() < deadline, "the execution never completed"
            time.sleep(0.05)
        assert done["Status"] == "SUCCEEDED"
        assert json.loads(done["Result"]) == {"first": 8, "approval": "yes"}
    finally:
        srv.stop()
