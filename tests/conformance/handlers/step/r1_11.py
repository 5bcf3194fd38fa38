from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy

RETRY = create_retry_strategy(
    RetryStrategyConfig(
        max_attempts=3, initial_delay=Duration.from_seconds(1), jitter_strategy=JitterStrategy.NONE
    )
)


@durable_step
def unreliable(step_ctx):
    if step_ctx.attempt < 2:
        raise RuntimeError("transient failure")
    return "Operation succeeded"


@durable_execution
def handler(event, context: DurableContext):
    return context.step(unreliable(), config=StepConfig(retry_strategy=RETRY))
