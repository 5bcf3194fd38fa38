import json
import os

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import InvokeConfig
from aws_durable_execution_sdk_python.serdes import SerDes

PREFIX = os.environ.get("CONFORMANCE_TARGET_PREFIX", "")
ECHO = PREFIX + "echo"
FAIL = PREFIX + "fail"


class UpperResult(SerDes):
    def serialize(self, value, serdes_context):
        return json.dumps(value)

    def deserialize(self, data, serdes_context):
        # Uppercases the raw result text, quotes included, as the requirement describes.
        return data.upper()


@durable_execution
def handler(event, context: DurableContext):
    return context.invoke(ECHO, event, config=InvokeConfig(serdes_result=UpperResult()))
