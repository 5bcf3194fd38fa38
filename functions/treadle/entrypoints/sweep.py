"""The sweep Lambda, run by the EventBridge schedule: hands timers entering SQS's
15-minute reach, and long-overdue ones, to the queue (see `adapters/aws/sweep.py`), then
fires the tenants' schedules due by now (`app/schedule_firing.py`), promotes the queued
starts capacity allows (`app/promoter.py`), and once per
`TREADLE_GC_INTERVAL_SECONDS` applies the tenants' GC policies (`app/gc.py`, bounded)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from treadle.entrypoints.runtime import logger, metrics, platform, tracer


def scheduled_ms(event: dict[str, Any]) -> int | None:
    """The run's scheduled time: consecutive windows stay contiguous even when a run
    starts late (a message is then sent late, never early)."""
    when = EventBridgeEvent(event).get("time")
    if not isinstance(when, str):
        return None
    try:
        return int(datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(raise_on_empty_metrics=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    when = scheduled_ms(event)
    report = platform().sweep(when)
    fired = platform().fire_schedules()
    # The safety net of queued starts: capacity freed by a stop or a raised quota, or a
    # promotion that died with its orchestrator, is found here within one interval.
    promoted = platform().promote_queued()
    if promoted:
        metrics.add_metric(name="QueuedStartsPromoted", unit=MetricUnit.Count, value=promoted)
    try:
        collected = platform().collect_garbage(when)
    except Exception:  # the timers were swept: GC's failure waits for its next run
        logger.exception("garbage collection failed")
        collected = 0
    if collected:
        metrics.add_metric(name="GarbageCollected", unit=MetricUnit.Count, value=collected)
    metrics.add_metric(name="ScheduledStarts", unit=MetricUnit.Count, value=fired.started)
    if fired.failed:
        metrics.add_metric(name="ScheduleFailures", unit=MetricUnit.Count, value=fired.failed)
    logger.info("schedules", extra=asdict(fired))
    metrics.add_metric(name="TimersEntering", unit=MetricUnit.Count, value=report.entering)
    metrics.add_metric(name="TimersOverdue", unit=MetricUnit.Count, value=report.overdue)
    if report.truncated:
        metrics.add_metric(name="SweepTruncated", unit=MetricUnit.Count, value=1)
    logger.info("sweep", extra=asdict(report))
    return asdict(report)
