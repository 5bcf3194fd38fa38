from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration
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


@durable_execution
def handler(event, context: DurableContext):
    config = WaitForConditionConfig(wait_strategy=until(lambda s: False), initial_state=None)
    return context.wait_for_condition(lambda state, ctx: None, config=config)
