import json
import sys

from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import StepConfig
from aws_durable_execution_sdk_python.plugin import DurableInstrumentationPlugin
from aws_durable_execution_sdk_python.retries import (
    RetryPresets,
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


class InvocationHooks(Recorder):
    def on_invocation_start(self, info):
        self.arn = info.execution_arn
        self.emit(hook="invocation-start", first=info.is_first_invocation)

    def on_invocation_end(self, info):
        self.emit(hook="invocation-end", status=info.status.value)


@durable_step
def always_fails(step_ctx):
    raise RuntimeError("always fails")


@durable_execution(plugins=[Factory(InvocationHooks)])
def handler(event, context: DurableContext):
    return context.step(always_fails(), config=StepConfig(retry_strategy=RetryPresets.none()))
