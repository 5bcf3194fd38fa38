from aws_durable_execution_sdk_python import DurableContext, durable_execution


def body(child):
    raise RuntimeError("child failed directly")


@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(body, name="child")
