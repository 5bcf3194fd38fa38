from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(lambda child: child.step(lambda ctx: event, name="step"))
