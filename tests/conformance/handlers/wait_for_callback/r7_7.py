from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    Duration,
    JitterStrategy,
    WaitForCallbackConfig,
)
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy


def submit(callback_id, ctx):
    """The external system learns the callback id elsewhere (the test reads the history)."""
    return None


def failing_submit(callback_id, ctx):
    raise RuntimeError("could not notify the approver")


@durable_execution
def handler(event, context: DurableContext):
    retry = create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=2,
            initial_delay=Duration.from_seconds(1),
            jitter_strategy=JitterStrategy.NONE,
        )
    )
    config = WaitForCallbackConfig(retry_strategy=retry)
    return context.wait_for_callback(failing_submit, name=event, config=config)
