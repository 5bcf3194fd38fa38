from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


def body(child, value):
    child.logger.info(f"child body running for {value}")
    return value


@durable_execution
def handler(event, context: DurableContext):
    result = context.run_in_child_context(lambda child: body(child, event), name="child")
    context.wait(Duration.from_seconds(1))
    return result
