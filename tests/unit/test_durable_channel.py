"""The durable channel answers like the HTTP surface: same results, same AWS errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.engine_harness import Harness, step
from treadle.api.channel import DurableChannel


def test_checkpoint_and_state_over_the_channel(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    channel = DurableChannel(h.engine)
    seen: dict[str, Any] = {}

    def script(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        arn, token = env["DurableExecutionArn"], env["CheckpointToken"]
        header, body = channel(
            "checkpoint",
            json.dumps(
                {
                    "DurableExecutionArn": arn,
                    "CheckpointToken": token,
                    "Updates": [step("s", "START")],
                }
            ).encode(),
        )
        seen["ok"] = (header, json.loads(body))
        seen["reused"] = channel(
            "checkpoint",
            json.dumps({"DurableExecutionArn": arn, "CheckpointToken": token}).encode(),
        )
        new_token = seen["ok"][1]["CheckpointToken"]
        header, body = channel(
            "state",
            json.dumps({"DurableExecutionArn": arn, "CheckpointToken": new_token}).encode(),
        )
        seen["state"] = json.loads(body)
        ops, _ = hh.engine.get_state(arn, new_token, None, None)
        seen["wire"] = [o.wire() for o in ops]  # the shape the HTTP route answers with
        seen["bad_batch"] = channel(
            "checkpoint",
            json.dumps(
                {
                    "DurableExecutionArn": arn,
                    "CheckpointToken": new_token,
                    "Updates": [{"Id": "w", "Type": "WAIT", "Action": "START"}],
                }
            ).encode(),
        )
        seen["unknown"] = channel("nope", json.dumps({"DurableExecutionArn": arn}).encode())
        seen["garbage"] = channel("checkpoint", b"{not json")
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts.append(script)
    h.engine.start(h.fn, None, None)
    h.pump()
    header, body = seen["ok"]
    assert header == {} and body["CheckpointToken"]
    assert [o["Id"] for o in body["NewExecutionState"]["Operations"]] == ["s"]
    assert {o["Id"] for o in seen["state"]["Operations"]} >= {"s"}
    assert seen["state"]["Operations"] == seen["wire"] and "NextMarker" not in seen["state"]
    reused = seen["reused"][0]["error"]
    assert reused["code"] == "InvalidParameterValueException" and reused["status"] == 400
    assert reused["message"].startswith("Invalid checkpoint token")
    assert seen["bad_batch"][0]["error"]["code"] == "InvalidParameterValueException"
    assert "WaitSeconds" in seen["bad_batch"][0]["error"]["message"]
    assert seen["unknown"][0]["error"]["code"] == "InvalidParameterValueException"
    assert seen["garbage"][0]["error"]["status"] == 400


def test_the_provided_sdk_sends_a_blocked_checkpoint_without_its_1_ms_wait() -> None:
    import socket
    import threading

    import aws_durable_execution_sdk_python.execution as sdk_execution
    import aws_durable_execution_sdk_python.lambda_service as sdk_service
    import aws_durable_execution_sdk_python.state as sdk_state

    from treadle.adapters.sandbox import durable_channel

    # install() changes the process's SDK: put everything back for the other tests.
    before = sdk_state._BLOCKED_CALLER_WAIT_SECONDS
    pool = sdk_execution.ThreadPoolExecutor
    stop = sdk_state.ExecutionState.stop_checkpointing
    client = sdk_service.LambdaClient.__dict__.get("_cached_boto_client")
    ours, theirs = socket.socketpair()
    try:
        assert durable_channel.install(ours, threading.Lock())
        # Positive, so queued operations still join the batch; far below the SDK's 1 ms.
        assert 0 < sdk_state._BLOCKED_CALLER_WAIT_SECONDS < 1e-4
        assert sdk_execution.ThreadPoolExecutor is durable_channel._InvocationThreads
    finally:
        sdk_state._BLOCKED_CALLER_WAIT_SECONDS = before
        sdk_execution.ThreadPoolExecutor = pool  # type: ignore[misc]
        sdk_state.ExecutionState.stop_checkpointing = stop  # type: ignore[method-assign]
        sdk_service.LambdaClient._cached_boto_client = client
        ours.close()
        theirs.close()
