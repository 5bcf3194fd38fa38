"""Waits for an "approval" event sent through /v1, then answers with who approved."""

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration

from treadle_workflows import wait_for_event


@durable_execution
def handler(event: dict, context: DurableContext) -> dict:
    approval = wait_for_event(context, "approval", timeout=Duration.from_days(7))
    return {"order": event.get("id"), "approved_by": approval["by"]}
