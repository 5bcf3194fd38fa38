from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


def body(child, value):
    child.step(lambda ctx: value, name="inner-step")
    child.wait(Duration.from_seconds(1), name="inner-wait")
    return value


@durable_execution
def handler(event, context: DurableContext):
    result = context.run_in_child_context(lambda child: body(child, event), name="child")
    out = context.step(lambda ctx: result, name="outer-step")
    context.wait(Duration.from_seconds(1), name="outer-wait")
    return out
