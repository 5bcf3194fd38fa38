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
    return context.parallel(
        [lambda ctx: "alpha", lambda ctx: "beta"], config=SEQUENTIAL
    ).get_results()
