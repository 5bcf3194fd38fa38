from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    CompletionConfig,
    MapConfig,
)

SEQUENTIAL = MapConfig(max_concurrency=1)


def sequential(**completion):
    return MapConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def projection(result, *fields):
    values = {
        "completionReason": result.completion_reason.value,
        "status": result.status.value,
        "successCount": result.success_count,
        "failureCount": result.failure_count,
        "totalCount": result.total_count,
    }
    return {k: values[k] for k in fields}


def fail_on(marker):
    def run(ctx, item, index, items):
        if item == marker:
            raise RuntimeError(f"item {index} failed")
        return item

    return run


@durable_execution
def handler(event, context: DurableContext):
    result = context.map(
        ["bad", "never"], fail_on("bad"), config=sequential(tolerated_failure_count=0)
    )
    result.throw_if_error()
    return result.get_results()
