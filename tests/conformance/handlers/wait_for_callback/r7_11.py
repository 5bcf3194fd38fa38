import json

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    WaitForCallbackConfig,
)
from aws_durable_execution_sdk_python.serdes import SerDes


def submit(callback_id, ctx):
    """The external system learns the callback id elsewhere (the test reads the history)."""
    return None


class JsonSerDes(SerDes):
    def serialize(self, value, serdes_context):
        return json.dumps(value)

    def deserialize(self, data, serdes_context):
        return json.loads(data)


@durable_execution
def handler(event, context: DurableContext):
    config = WaitForCallbackConfig(serdes=JsonSerDes())
    return context.wait_for_callback(submit, name=event, config=config)["status"]
