import json

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.concurrency.models import (
    BatchItem,
    BatchResult,
    CompletionReason,
)
from aws_durable_execution_sdk_python.config import (
    BatchItemStatus,
    CompletionConfig,
    MapConfig,
)
from aws_durable_execution_sdk_python.serdes import SerDes

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


class OperationSerDes(SerDes):
    """Encodes the whole map result as OPSERDE:<comma-joined results> and back."""

    def serialize(self, value, serdes_context):
        # The SDK also hands it each iteration's result when no item serdes is set.
        if not isinstance(value, BatchResult):
            return json.dumps(value)
        return "OPSERDE:" + ",".join(value.get_results())

    def deserialize(self, data, serdes_context):
        if not data.startswith("OPSERDE:"):
            return json.loads(data)
        values = data.removeprefix("OPSERDE:").split(",") if data != "OPSERDE:" else []
        items = [BatchItem(i, BatchItemStatus.SUCCEEDED, v) for i, v in enumerate(values)]
        return BatchResult(items, CompletionReason.ALL_COMPLETED)


@durable_execution
def handler(event, context: DurableContext):
    config = MapConfig(max_concurrency=1, serdes=OperationSerDes())
    return context.map(
        ["x", "y"], lambda ctx, item, i, items: item.upper(), config=config
    ).get_results()
