"""Target of the invoke suite: returns the size of what it received."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    return {"received_length": len(event["data"])}
