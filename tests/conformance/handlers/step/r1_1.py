from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def greet(step_ctx, name):
    return f"Hello, {name}!"


@durable_execution
def handler(event, context: DurableContext):
    return context.step(greet(event))
