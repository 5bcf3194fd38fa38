"""The official durable SDK's own CPU, in-process, against a client that answers at once.

Tenant code runs on the unmodified SDK, so no platform can run a durable invocation for
less than the SDK's own work: parsing the envelope, its handler wrapper and threads,
each operation's checkpoint through its batcher, the answer. This measures that floor
as a sandbox worker runs the SDK (with the runtime's `tune_sdk` changes), with a client
that costs next to nothing, on the benchmarks' handlers:

- per invocation: a one-step execution (W2's handler), start to answer;
- per step: `steps` with 21 steps minus `steps` with 1, over 20 (W1's handler).

    .venv/bin/python -m benchmarks.sdk_floor          # 3 rounds, the best printed
    .venv/bin/python -m benchmarks.sdk_floor --json   # the figures as JSON (FLOOR)

Run in a process of its own: it points the SDK's cached client at the instant one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from collections.abc import Callable
from typing import Any

from benchmarks import handlers
from treadle.adapters.sandbox.contract import LambdaContext
from treadle.adapters.sandbox.lambda_logging import LogSink

# The SDK finds the execution's own operation by the ARN's last segment.
ARN = "arn:aws:lambda:us-east-1:123456789012:function:floor:1/durable-execution/floor/execution"
_STATUS = {"START": "STARTED", "SUCCEED": "SUCCEEDED", "FAIL": "FAILED"}


class InstantClient:
    """The two data-plane calls the SDK makes, answered in boto3's shapes at once."""

    def __init__(self) -> None:
        self.checkpoints = 0

    def checkpoint_durable_execution(self, **params: Any) -> dict[str, Any]:
        self.checkpoints += 1
        now = datetime.datetime.now(datetime.UTC)
        operations = []
        for update in params.get("Updates", []):
            operation: dict[str, Any] = {
                "Id": update["Id"],
                "Type": update["Type"],
                "Status": _STATUS.get(update["Action"], "STARTED"),
                "StartTimestamp": now,
            }
            for key in ("Name", "ParentId"):
                if update.get(key):
                    operation[key] = update[key]
            if update["Action"] == "SUCCEED" and update["Type"] == "STEP":
                operation["StepDetails"] = {"Result": update.get("Payload"), "Attempt": 1}
            operations.append(operation)
        return {"CheckpointToken": "token", "NewExecutionState": {"Operations": operations}}

    def get_durable_execution_state(self, **params: Any) -> dict[str, Any]:
        return {"Operations": []}


def _envelope(event: dict[str, Any]) -> dict[str, Any]:
    start = {
        "Id": "execution",
        "Type": "EXECUTION",
        "Status": "STARTED",
        "StartTimestamp": int(time.time() * 1000),
        "ExecutionDetails": {"InputPayload": json.dumps(event)},
    }
    return {
        "DurableExecutionArn": ARN,
        "CheckpointToken": "token-0",
        "InitialExecutionState": {"Operations": [start], "NextMarker": ""},
    }


def _context() -> LambdaContext:
    """The context a sandbox worker hands the handler (its log lines go nowhere)."""
    sink = LogSink(os.open(os.devnull, os.O_WRONLY))
    deadline_ms = int(time.time() * 1000) + 3_600_000
    return LambdaContext("request", deadline_ms, "arn:aws:lambda:::function:floor", sink)


def prepare() -> tuple[dict[str, Callable[..., Any]], InstantClient]:
    """The benchmarks' handlers on the SDK as a worker runs it, with the instant client."""
    from aws_durable_execution_sdk_python import lambda_service

    from treadle.adapters.sandbox import durable_channel

    client = InstantClient()
    lambda_service.LambdaClient._cached_boto_client = client  # type: ignore[attr-defined]
    durable_channel.tune_sdk()
    namespace: dict[str, Any] = {}
    exec(compile(handlers.CODE, f"{handlers.MODULE}.py", "exec"), namespace)
    return namespace, client


def cpu_us(
    handler: Callable[..., Any], event: dict[str, Any], count: int, context: LambdaContext
) -> float:
    """CPU µs of this process (all its threads) per invocation, after a warm-up."""
    for _ in range(max(20, count // 10)):
        _succeeds(handler(_envelope(event), context))
    before = time.process_time()
    for _ in range(count):
        _succeeds(handler(_envelope(event), context))
    return (time.process_time() - before) / count * 1e6


def _succeeds(answer: dict[str, Any]) -> None:
    if answer.get("Status") != "SUCCEEDED":
        raise RuntimeError(f"the SDK did not succeed against the instant client: {answer}")


def measure(count: int, rounds: int) -> dict[str, float]:
    namespace, client = prepare()
    one, steps, context = namespace["one_step"], namespace["steps"], _context()
    few = max(1, count // 10)
    invocation = min(cpu_us(one, {}, count, context) for _ in range(rounds))
    many = min(cpu_us(steps, {"n": 21}, few, context) for _ in range(rounds))
    single = min(cpu_us(steps, {"n": 1}, few, context) for _ in range(rounds))
    # What the SDK checkpointed for one 21-step invocation: one call per step, or the
    # figures above are not the SDK's work.
    before = client.checkpoints
    steps(_envelope({"n": 21}), context)
    return {
        "sdk_invocation_us": invocation,
        "sdk_step_us": max(0.0, (many - single) / 20),
        "checkpoints_per_21_steps": float(client.checkpoints - before),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sdk_floor", description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="invocations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = measure(args.count, args.rounds)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"the SDK's CPU per one-step invocation: {figures['sdk_invocation_us']:.0f} µs")
        print(f"the SDK's CPU per step:                {figures['sdk_step_us']:.0f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
