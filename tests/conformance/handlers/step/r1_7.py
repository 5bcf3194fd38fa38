from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def greet(step_ctx, name):
    step_ctx.logger.info(f"Greeting step started for: {name}")
    result = f"Hello, {name}!"
    step_ctx.logger.info(f"Greeting step completed with: {result}")
    return result


@durable_execution
def handler(event, context: DurableContext):
    return context.step(greet(event))
