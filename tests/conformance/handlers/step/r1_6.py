import json

from aws_durable_execution_sdk_python import (
    DurableContext,
    durable_execution,
)
from aws_durable_execution_sdk_python.config import (
    StepConfig,
)
from aws_durable_execution_sdk_python.serdes import SerDes


class UppercaseSerDes(SerDes):
    def serialize(self, value, serdes_context):
        return json.dumps(value.upper() if isinstance(value, str) else value)

    def deserialize(self, data, serdes_context):
        return json.loads(data)


@durable_execution
def handler(event, context: DurableContext):
    return context.step(
        lambda ctx: event, name="return_input", config=StepConfig(serdes=UppercaseSerDes())
    )
