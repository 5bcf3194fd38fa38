import json
import os

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import InvokeConfig
from aws_durable_execution_sdk_python.serdes import SerDes

PREFIX = os.environ.get("CONFORMANCE_TARGET_PREFIX", "")
ECHO = PREFIX + "echo"
FAIL = PREFIX + "fail"


class UpperPayload(SerDes):
    def serialize(self, value, serdes_context):
        return json.dumps({k: v.upper() for k, v in value.items()})

    def deserialize(self, data, serdes_context):
        return json.loads(data)


@durable_execution
def handler(event, context: DurableContext):
    return context.invoke(ECHO, event, config=InvokeConfig(serdes_payload=UpperPayload()))
