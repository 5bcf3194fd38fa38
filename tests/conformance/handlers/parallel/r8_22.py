from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    CompletionConfig,
    ParallelConfig,
)

SEQUENTIAL = ParallelConfig(max_concurrency=1)


def sequential(**completion):
    return ParallelConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def fail(ctx):
    raise RuntimeError("branch failed")


def projection(result, *fields):
    values = {
        "completionReason": result.completion_reason.value,
        "status": result.status.value,
        "successCount": result.success_count,
        "failureCount": result.failure_count,
        "totalCount": result.total_count,
    }
    return {k: values[k] for k in fields}


@durable_execution
def handler(event, context: DurableContext):
    branches = [fail, lambda ctx: "b", lambda ctx: "c", lambda ctx: "d"]
    result = context.parallel(branches, config=sequential(tolerated_failure_percentage=25))
    return projection(
        result, "completionReason", "status", "successCount", "failureCount", "totalCount"
    )
