import os

from aws_durable_execution_sdk_python import (
    DurableContext,
    durable_execution,
    durable_step,
)
from aws_durable_execution_sdk_python.config import (
    StepConfig,
    StepSemantics,
)
from aws_durable_execution_sdk_python.retries import (
    RetryPresets,
)


@durable_step
def crash(step_ctx, text):
    step_ctx.logger.info(f"Step executing with input: {text}")
    os._exit(1)


@durable_execution
def handler(event, context: DurableContext):
    return context.step(
        crash(event),
        name="at_most_once_flaky_step",
        config=StepConfig(
            retry_strategy=RetryPresets.none(), step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY
        ),
    )
