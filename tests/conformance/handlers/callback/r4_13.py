from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def handler(event, context: DurableContext):
    try:
        message = context.create_callback(name=event).result()
    except Exception as exc:
        message = f"callback failed: {exc}"
    context.wait(Duration.from_seconds(2))
    return message
