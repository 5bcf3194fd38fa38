from aws_durable_execution_sdk_python import DurableContext, durable_execution


def body(child, value):
    first = child.step(lambda ctx: value, name="first")
    return child.step(lambda ctx: first, name="second")


@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(lambda child: body(child, event), name="child")
