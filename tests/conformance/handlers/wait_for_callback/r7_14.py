from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    Duration,
    WaitForCallbackConfig,
)


def submit(callback_id, ctx):
    """The external system learns the callback id elsewhere (the test reads the history)."""
    return None


@durable_execution
def handler(event, context: DurableContext):
    config = WaitForCallbackConfig(timeout=Duration.from_seconds(3))
    try:
        return context.wait_for_callback(submit, name=event, config=config)
    except Exception:
        return "timed-out-handled"
