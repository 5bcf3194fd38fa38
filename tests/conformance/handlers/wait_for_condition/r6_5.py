from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitForConditionDecision,
    WaitStrategyConfig,
    create_wait_strategy,
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
    strategy = create_wait_strategy(
        WaitStrategyConfig(
            should_continue_polling=lambda s: s < event,
            initial_delay=Duration.from_seconds(2),
            backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE,
        )
    )
    config = WaitForConditionConfig(wait_strategy=strategy, initial_state=0)
    return context.wait_for_condition(lambda state, ctx: state + 1, config=config)
