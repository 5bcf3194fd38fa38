from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision


class TransientError(Exception):
    pass


def retry_on_transient(error, attempt):
    if (
        isinstance(error, TransientError)
        or "TransientError" in type(error).__name__
        or "TransientError" in str(getattr(error, "error_type", ""))
    ):
        return RetryDecision.retry(Duration.from_seconds(1))
    return RetryDecision.no_retry()


@durable_step
def func(step_ctx):
    if step_ctx.attempt < 2:
        raise TransientError("temporary glitch")
    return "recovered"


@durable_execution
def handler(event, context: DurableContext):
    return context.step(func(), config=StepConfig(retry_strategy=retry_on_transient))
