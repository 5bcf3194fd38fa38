import os

from aws_durable_execution_sdk_python import (
    DurableContext,
    durable_execution,
    durable_step,
)
from aws_durable_execution_sdk_python.config import (
    Duration,
    JitterStrategy,
    StepConfig,
    StepSemantics,
)
from aws_durable_execution_sdk_python.retries import (
    RetryStrategyConfig,
    create_retry_strategy,
)

RETRY = create_retry_strategy(
    RetryStrategyConfig(
        max_attempts=3, initial_delay=Duration.from_seconds(1), jitter_strategy=JitterStrategy.NONE
    )
)


@durable_step
def crash_once(step_ctx, text):
    step_ctx.logger.info(f"Step executing with input: {text}")
    if step_ctx.attempt < 2:
        os._exit(1)
    return "succeeded on second attempt"


@durable_execution
def handler(event, context: DurableContext):
    return context.step(
        crash_once(event),
        config=StepConfig(
            retry_strategy=RETRY, step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY
        ),
    )
