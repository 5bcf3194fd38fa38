"""The sweep handler: a recorded EventBridge schedule event moves a far timer into SQS."""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime

from support.lambda_calls import call, create_function, execution, start
from support.lambda_events import TENANT, Context, LambdaEnv, load_event
from treadle.adapters.aws.dynamodb_schedules import DynamoScheduleStore
from treadle.domain.schedules import fire_name
from treadle.entrypoints import sweep


def _delayed(env: LambdaEnv) -> int:
    """Messages in the queue, delayed or not: a short delay of one already there (the
    start's own timers) may run out while the test runs, which changes no total."""
    names = [
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
    ]
    attributes = env.clients.sqs.get_queue_attributes(QueueUrl=env.queue_url, AttributeNames=names)[
        "Attributes"
    ]
    return sum(int(attributes[name]) for name in names)


def test_a_timer_entering_the_queue_horizon_is_sent(
    lambda_env: LambdaEnv, context: Context
) -> None:
    # An execution timeout of 930 s: beyond SQS's 15 minutes when the execution starts,
    # so it stays a row until a sweep finds it within reach.
    create_function(lambda_env, "slow", timeout_s=930)
    start(lambda_env, "slow", {"n": 1})
    before = _delayed(lambda_env)
    event = copy.deepcopy(load_event("eventbridge_scheduled"))
    # The run scheduled 45 s later: the timeout is then 885 s away, in its window
    # (900 - 60, 900]; the start's own invoke timer is then less than one interval (60 s)
    # overdue, so not resent, however long the test took to get here (a minute later
    # was flaky: the event's time is truncated to the second).
    event["time"] = datetime.fromtimestamp(time.time() + 45, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    report = sweep.handler(event, context)

    assert report["entering"] == 1 and report["overdue"] == 0, report
    assert _delayed(lambda_env) == before + 1


def test_the_recorded_event_runs_at_its_own_time(lambda_env: LambdaEnv, context: Context) -> None:
    report = sweep.handler(load_event("eventbridge_scheduled"), context)
    assert report == {"read": 0, "entering": 0, "overdue": 0, "deferred": 0, "truncated": False}
    assert sweep.scheduled_ms({"time": "not a time"}) is None


def test_the_sweep_fires_a_due_schedule_once(lambda_env: LambdaEnv, context: Context) -> None:
    create_function(lambda_env, "nightly")
    body = {"name": "every", "cron": "* * * * *", "function": "nightly", "input": {"n": 3}}
    status, _, made = call(lambda_env, "POST", "/v1/schedules", body)
    assert status == 201, made
    # A minute later, without waiting one: the stored next fire time moved into the past.
    store = DynamoScheduleStore(lambda_env.clients.dynamodb, lambda_env.table)
    stored = store.get(TENANT, "every")
    fire_ms = stored.next_fire_ms - 60_000
    store.replace(stored.model_copy(update={"next_fire_ms": fire_ms, "due_ms": fire_ms}))

    sweep.handler(load_event("eventbridge_scheduled"), context)
    sweep.handler(load_event("eventbridge_scheduled"), context)  # a second run: no second start

    status, _, shown = call(lambda_env, "GET", "/v1/schedules/every")
    assert [f["outcome"] for f in shown["recentFirings"]] == ["started"]
    arn = shown["lastExecutionArn"]
    assert arn.split("/")[-2] == fire_name("every", fire_ms)
    assert json.loads(execution(lambda_env, arn)["InputPayload"]) == {"n": 3}
    status, _, listed = call(lambda_env, "GET", "/2025-12-01/functions/nightly/durable-executions")
    assert status == 200 and len(listed["DurableExecutions"]) == 1
