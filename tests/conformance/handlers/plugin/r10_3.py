import json
import sys

from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.plugin import DurableInstrumentationPlugin, OperationType
from aws_durable_execution_sdk_python.retries import (
    RetryStrategyConfig,
    create_retry_strategy,
)


class Recorder(DurableInstrumentationPlugin):
    """Writes one JSON object per hook to plain stdout, stamped with the execution ARN."""

    label = "CONFPLUGIN"

    def __init__(self) -> None:
        self.arn = None

    def emit(self, **fields):
        record = {"plugin": self.label, **fields}
        if self.arn:
            record["durableExecutionArn"] = self.arn
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


class Factory:
    def __init__(self, plugin_class):
        self.plugin_class = plugin_class

    def create_plugin(self, info):
        return self.plugin_class()


@durable_step
def greet(step_ctx, name):
    step_ctx.logger.info(f"Greeting step running for: {name}")
    return f"Hello, {name}!"


class AttemptHooks(Recorder):
    def on_invocation_start(self, info):
        self.arn = info.execution_arn

    def on_user_function_start(self, info):
        if info.operation_type is OperationType.STEP:
            self.emit(hook="attempt-start", n=info.attempt, op=info.operation_id)

    def on_user_function_end(self, info):
        if info.operation_type is OperationType.STEP:
            self.emit(
                hook="attempt-end", n=info.attempt, outcome=info.outcome.value, op=info.operation_id
            )


RETRY = create_retry_strategy(
    RetryStrategyConfig(
        max_attempts=3, initial_delay=Duration.from_seconds(1), jitter_strategy=JitterStrategy.NONE
    )
)


@durable_step
def flaky(step_ctx):
    if step_ctx.attempt < 2:
        raise RuntimeError("first attempt fails")
    return "Operation succeeded"


@durable_execution(plugins=[Factory(AttemptHooks)])
def handler(event, context: DurableContext):
    return context.step(flaky(), config=StepConfig(retry_strategy=RETRY))
