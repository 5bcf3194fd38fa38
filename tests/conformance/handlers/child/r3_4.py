from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets


def failing(ctx):
    raise RuntimeError("step failed inside child")


@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(
        lambda child: child.step(
            failing, name="failing", config=StepConfig(retry_strategy=RetryPresets.none())
        ),
        name="child",
    )
