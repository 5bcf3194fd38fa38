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


def run(ctx, item, index, items):
    if index < 2:
        raise RuntimeError(f"item {index} failed")
    return item


@durable_execution
def handler(event, context: DurableContext):
    result = context.map(
        ["a", "b", "c", "d"], run, config=sequential(tolerated_failure_percentage=25)
    )
    return projection(result, "completionReason", "successCount", "failureCount", "totalCount")
