from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryDecision


class TransientError(Exception):
    pass


def no_retry_on_transient_error(error, attempt):
    if isinstance(error, TransientError):
        return RetryDecision.no_retry()
    return RetryDecision.retry(Duration.from_seconds(1))


@durable_step
def func(step_ctx):
    raise TransientError("not retried")


@durable_execution
def handler(event, context: DurableContext):
    return context.step(func(), config=StepConfig(retry_strategy=no_retry_on_transient_error))
