from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


def body(child, value):
    child.wait(Duration.from_seconds(1))
    return value


@durable_execution
def handler(event, context: DurableContext):
    result = context.run_in_child_context(lambda child: body(child, event), name="child")
    return context.step(lambda ctx: result, name="after")
