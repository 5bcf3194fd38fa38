from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets


@durable_step
def fails(step_ctx):
    step_ctx.logger.info("step executed")
    raise RuntimeError("permanent failure")


@durable_execution
def handler(event, context: DurableContext):
    try:
        context.step(fails(), config=StepConfig(retry_strategy=RetryPresets.none()))
    except Exception:
        pass
    context.wait(Duration.from_seconds(1))
    return None
