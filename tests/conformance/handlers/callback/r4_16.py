import json

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig
from aws_durable_execution_sdk_python.serdes import SerDes


class NumberSerDes(SerDes):
    def serialize(self, value, serdes_context):
        return json.dumps(value)

    def deserialize(self, data, serdes_context):
        return int(json.loads(data))


@durable_execution
def handler(event, context: DurableContext):
    count = context.create_callback(
        name=event, config=CallbackConfig(serdes=NumberSerDes())
    ).result()
    return {"count": count, "doubled": count * 2}
