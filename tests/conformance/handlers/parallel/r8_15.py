import json

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    CompletionConfig,
    ParallelConfig,
)
from aws_durable_execution_sdk_python.serdes import SerDes

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


class Wrapped(SerDes):
    def serialize(self, value, serdes_context):
        return json.dumps({"wrapped": value})

    def deserialize(self, data, serdes_context):
        return json.loads(data)["wrapped"]


@durable_execution
def handler(event, context: DurableContext):
    config = ParallelConfig(max_concurrency=1, item_serdes=Wrapped())
    return context.parallel([lambda ctx: "x", lambda ctx: "y"], config=config).get_results()
