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


class Faulty(Recorder):
    label = "CONFPLUGIN-FAULTY"

    def fail(self, hook):
        self.emit(hook=hook)
        raise RuntimeError(f"plugin hook {hook} failed")

    def on_invocation_start(self, info):
        self.arn = info.execution_arn
        self.fail("invocation-start")

    def on_invocation_end(self, info):
        self.fail("invocation-end")

    def on_operation_start(self, info):
        if info.operation_type is OperationType.STEP:
            self.fail("operation-start")

    def on_operation_end(self, info):
        if info.operation_type is OperationType.STEP:
            self.fail("operation-end")

    def on_user_function_start(self, info):
        if info.operation_type is OperationType.STEP:
            self.fail("attempt-start")

    def on_user_function_end(self, info):
        if info.operation_type is OperationType.STEP:
            self.fail("attempt-end")


@durable_execution(plugins=[Factory(Faulty)])
def handler(event, context: DurableContext):
    return context.step(greet(event))
