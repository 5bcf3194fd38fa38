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


def check(state, ctx):
    raise RuntimeError("check failed")


@durable_execution
def handler(event, context: DurableContext):
    config = WaitForConditionConfig(wait_strategy=until(lambda s: True), initial_state=0)
    try:
        return context.wait_for_condition(check, config=config)
    except Exception:
        return "recovered"
