"""A nightly report, started by a schedule (`docs/schedules.md`): its event is the
schedule's input; its execution name carries the fire time (`nightly-20261204T0200Z`)."""

from aws_durable_execution_sdk_python import (
    DurableContext,
    StepContext,
    durable_execution,
    durable_step,
)


@durable_step
def summarise(step_ctx: StepContext, scope: str) -> dict:
    return {"scope": scope, "rows": 42}


@durable_execution
def handler(event: dict, context: DurableContext) -> dict:
    return context.step(summarise(event.get("scope", "daily")), name="summarise")
