"""Tenant code deployed by the benchmarks: one module, one handler per workload.

It uses the unmodified durable SDK exactly as a tenant would; each workload deploys it
with `create_function` under its own name and handler.
"""

from __future__ import annotations

MODULE = "bench"

CODE = '''
import math
import time

from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration


@durable_step
def noop(step_ctx, i):
    return i


@durable_execution
def steps(event, context: DurableContext):
    """W1: `n` trivial sequential steps."""
    total = 0
    for i in range(event.get("n", 20)):
        total += context.step(noop(i), name=f"s{i}")
    return total


@durable_execution
def one_step(event, context: DurableContext):
    """W2: a single step."""
    return context.step(noop(1), name="only")


@durable_execution
def wait_then_step(event, context: DurableContext):
    """W3s: a durable wait of `wait` seconds, then one step."""
    context.wait(Duration.from_seconds(event["wait"]), name="sleep")
    return context.step(noop(1), name="after")


@durable_execution
def wait_until_then_step(event, context: DurableContext):
    """W4: wait until the epoch second `due`, then one step.

    The duration is computed from the clock, which is not deterministic, but only the
    first invocation uses it: replays find the wait already in the checkpointed state.
    """
    seconds = max(1, math.ceil(event["due"] - time.time()))
    context.wait(Duration.from_seconds(seconds), name="sleep")
    return context.step(noop(1), name="after")


@durable_execution
def callback(event, context: DurableContext):
    """W3e: park on a callback; the benchmark reads its id from the history."""
    return context.wait_for_callback(lambda callback_id, ctx: None, name="approval")


def plain(event, context):
    """C1: a trivial plain (non-durable) handler that reports its own time."""
    started = time.perf_counter()
    out = {"ok": True, "fn": context.function_name}
    out["own_ms"] = (time.perf_counter() - started) * 1000.0
    return out
'''

FILES = {f"{MODULE}.py": CODE}


def handler(name: str) -> str:
    return f"{MODULE}.{name}"
