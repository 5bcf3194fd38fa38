from aws_durable_execution_sdk_python import DurableContext, durable_execution


def inner(child, value):
    return child.step(lambda ctx: value, name="inner-step")


def outer(child, value):
    child.step(lambda ctx: value, name="outer-step")
    return child.run_in_child_context(lambda c: inner(c, value), name="inner")


@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(lambda child: outer(child, event), name="outer")
