from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy

RETRY = create_retry_strategy(
    RetryStrategyConfig(
        max_attempts=2, initial_delay=Duration.from_seconds(1), jitter_strategy=JitterStrategy.NONE
    )
)


def always_fail(ctx):
    raise RuntimeError("always fails")


@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(
        lambda child: child.step(
            always_fail, name="always_fail", config=StepConfig(retry_strategy=RETRY)
        ),
        name="child",
    )
