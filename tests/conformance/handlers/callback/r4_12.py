from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def handler(event, context: DurableContext):
    result = context.create_callback(name=event).result()
    context.wait(Duration.from_seconds(2))
    return result
