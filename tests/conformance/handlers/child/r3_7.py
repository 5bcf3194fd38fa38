from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy

RETRY = create_retry_strategy(
    RetryStrategyConfig(
        max_attempts=3, initial_delay=Duration.from_seconds(1), jitter_strategy=JitterStrategy.NONE
    )
)


def body(child, value):
    def flaky(ctx):
        if ctx.attempt < 2:
            raise RuntimeError("first attempt fails")
        return value

    return child.step(flaky, name="flaky", config=StepConfig(retry_strategy=RETRY))


@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(lambda child: body(child, event), name="child")
