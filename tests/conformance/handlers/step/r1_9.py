from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration


@durable_step
def cached(step_ctx):
    step_ctx.logger.info("step executed")
    return "cached_value"


@durable_execution
def handler(event, context: DurableContext):
    result = context.step(cached())
    context.wait(Duration.from_seconds(1))
    return result
