from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def handler(event, context: DurableContext):
    result = context.run_in_child_context(lambda child: child.step(lambda ctx: event, name="step"))
    context.wait(Duration.from_seconds(1))
    return result
