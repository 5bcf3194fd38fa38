from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def unreliable(step_ctx):
    if step_ctx.attempt < 3:
        raise RuntimeError(f"failure on attempt {step_ctx.attempt}")
    return "succeeded"


@durable_execution
def handler(event, context: DurableContext):
    return context.step(unreliable())
