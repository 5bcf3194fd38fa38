"""The smallest durable function: one step."""

from __future__ import annotations

from aws_durable_execution_sdk_python import (
    DurableContext,
    StepContext,
    durable_execution,
    durable_step,
)


@durable_step
def greet(step_ctx: StepContext, name: str) -> str:
    return f"Hello, {name}!"


@durable_execution
def handler(event: str, context: DurableContext) -> str:
    return context.step(greet(event), name="greet")
