from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    Duration,
)


def submit(callback_id, ctx):
    """The external system learns the callback id elsewhere (the test reads the history)."""
    return None


@durable_execution
def handler(event, context: DurableContext):
    context.wait(Duration.from_seconds(1))
    context.step(lambda ctx: {"fixed": "data"}, name="prepare")
    return context.wait_for_callback(submit, name=event)
