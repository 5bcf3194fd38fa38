from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig
from aws_durable_execution_sdk_python.serdes import SerDes


class UpperSerDes(SerDes):
    def serialize(self, value, serdes_context):
        return str(value).upper()

    def deserialize(self, data, serdes_context):
        return data


@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(
        lambda child: child.step(lambda ctx: event, name="step"),
        name="child",
        config=ChildConfig(serdes=UpperSerDes()),
    )
