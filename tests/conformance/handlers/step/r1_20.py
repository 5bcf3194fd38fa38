from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets


@durable_step
def failing(step_ctx):
    raise RuntimeError("boom")


@durable_execution
def handler(event, context: DurableContext):
    try:
        value = context.step(failing(), config=StepConfig(retry_strategy=RetryPresets.none()))
    except Exception:
        value = "fallback"
    return context.step(lambda ctx: f"{value}_result", name="second")
