import json

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration
from aws_durable_execution_sdk_python.serdes import SerDes
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitForConditionDecision,
)


def until(predicate, delay=1):
    """Keep polling every `delay` seconds while `predicate(state)` holds."""

    def strategy(state, attempts):
        if predicate(state):
            return WaitForConditionDecision.continue_waiting(Duration.from_seconds(delay))
        return WaitForConditionDecision.stop_polling()

    return strategy


class EncodedString(SerDes):
    def serialize(self, value, serdes_context):
        return json.dumps({"encoded": value})

    def deserialize(self, data, serdes_context):
        return json.loads(data)["encoded"]


@durable_execution
def handler(event, context: DurableContext):
    config = WaitForConditionConfig(
        wait_strategy=until(lambda s: len(s) < 2), initial_state="", serdes=EncodedString()
    )
    return context.wait_for_condition(lambda state, ctx: state + "x", config=config)
