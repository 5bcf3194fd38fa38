"""Target of the invoke suite: a durable function that returns its input."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    return event
