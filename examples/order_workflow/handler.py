"""An order workflow: retried steps, a durable wait, a human approval, a child context.

Plain code for the official AWS Lambda durable execution SDK: it runs unmodified on
AWS Lambda and on Treadle.
"""

from __future__ import annotations

import json
from typing import Any

from aws_durable_execution_sdk_python import (
    DurableContext,
    StepContext,
    durable_execution,
    durable_step,
    durable_with_child_context,
)
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy

RETRY_FAST = StepConfig(
    retry_strategy=create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=4,
            initial_delay=Duration.from_seconds(1),
            backoff_rate=1.5,
            jitter_strategy=JitterStrategy.NONE,
        )
    )
)


@durable_step
def reserve_stock(step_ctx: StepContext, items: list[str]) -> dict[str, Any]:
    return {"reserved": items}


@durable_step
def charge_card(step_ctx: StepContext, amount: int) -> dict[str, Any]:
    # The payment provider is flaky: the first two attempts fail, the SDK retries
    # with the configured backoff and Treadle records every attempt.
    if step_ctx.attempt < 3:
        raise ConnectionError(f"payment gateway timeout (attempt {step_ctx.attempt})")
    step_ctx.logger.info("charged %s", amount)
    return {"charged": amount, "attempts": step_ctx.attempt}


@durable_step
def pack(step_ctx: StepContext, items: list[str]) -> str:
    return f"parcel of {len(items)} items"


@durable_step
def label(step_ctx: StepContext, parcel: str) -> str:
    return f"label for {parcel}"


@durable_with_child_context
def ship(ctx: DurableContext, items: list[str]) -> dict[str, str]:
    parcel = ctx.step(pack(items), name="pack")
    return {"parcel": parcel, "label": ctx.step(label(parcel), name="label")}


@durable_execution
def handler(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    items = event.get("items", ["book"])
    stock = context.step(reserve_stock(items), name="reserve-stock")
    payment = context.step(
        charge_card(event.get("amount", 42)), name="charge-card", config=RETRY_FAST
    )
    context.wait(Duration.from_seconds(event.get("cooling_off_seconds", 2)), name="cooling-off")
    # A callback's result arrives as the raw text its sender posted.
    approval = json.loads(
        context.wait_for_callback(
            lambda callback_id, ctx: ctx.logger.info("approval requested: %s", callback_id),
            name="manager-approval",
        )
    )
    shipment = context.run_in_child_context(ship(items), name="ship")
    return {"stock": stock, "payment": payment, "approval": approval, "shipment": shipment}
