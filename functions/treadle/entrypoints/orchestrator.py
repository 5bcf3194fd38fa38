"""The orchestrator Lambda: an SQS batch of timers, fired; partial batch failures.

A failed message is reported in `batchItemFailures` (the event source leaves it in the
queue; after `maxReceiveCount` receives the redrive policy parks it in the dead-letter
queue) and made visible again after a backoff (`retry_backoff_s`, the same as in
`treadle dev --backend aws`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from treadle.adapters.aws.sqs_dispatcher import batch_response
from treadle.entrypoints.runtime import logger, metrics, platform, tracer
from treadle.platform.loops import retry_backoff_s


def _retry_soon(records: list[dict[str, Any]], failed: set[str]) -> None:
    p = platform()
    for record in records:
        if record.get("messageId") not in failed or not record.get("receiptHandle"):
            continue
        count = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            p.clients.sqs.change_message_visibility(
                QueueUrl=p.queue_url,
                ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=retry_backoff_s(count),
            )
        except Exception:  # best effort: the visibility timeout brings it back anyway
            logger.warning("could not shorten the visibility of %s", record["messageId"])


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(raise_on_empty_metrics=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = [record.raw_event for record in SQSEvent(event).records]
    failed = platform().handle_messages(records)
    metrics.add_metric(name="TimerMessages", unit=MetricUnit.Count, value=len(records))
    metrics.add_metric(name="TimerMessagesFailed", unit=MetricUnit.Count, value=len(failed))
    if failed:
        logger.warning("timer messages failed", extra={"message_ids": failed})
        _retry_soon(records, set(failed))
    return batch_response(failed)
