from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy

RETRY = create_retry_strategy(
    RetryStrategyConfig(
        max_attempts=5,
        initial_delay=Duration.from_seconds(2),
        backoff_rate=3,
        jitter_strategy=JitterStrategy.NONE,
    )
)


@durable_step
def flaky(step_ctx):
    if step_ctx.attempt < 3:
        raise RuntimeError(f"failure on attempt {step_ctx.attempt}")
    return "succeeded"


@durable_execution
def handler(event, context: DurableContext):
    return context.step(flaky(), config=StepConfig(retry_strategy=RETRY))
