import json
import sys

from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.plugin import DurableInstrumentationPlugin, OperationType


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


class OperationHooks(Recorder):
    def on_invocation_start(self, info):
        self.arn = info.execution_arn

    def on_operation_start(self, info):
        if info.operation_type is OperationType.STEP:
            self.emit(hook="operation-start", op=info.operation_id)

    def on_operation_end(self, info):
        if info.operation_type is OperationType.STEP:
            self.emit(hook="operation-end", op=info.operation_id, status=info.status.value)


@durable_execution(plugins=[Factory(OperationHooks)])
def handler(event, context: DurableContext):
    return context.step(greet(event))
