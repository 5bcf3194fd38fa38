"""Queued starts in the platform Lambdas: the orchestrator promotes at the end of the
batch that freed capacity, the API after a call that freed it (a stop), the sweep what
anything else freed."""

from __future__ import annotations

import copy
import json
import time
from typing import Any
from urllib.parse import quote

from support.lambda_calls import call, create_function, execution, start
from support.lambda_events import TENANT, Context, LambdaEnv, load_event
from treadle.adapters.aws.dynamodb_tenants import DynamoTenantStore
from treadle.entrypoints import orchestrator, sweep
from treadle.tenancy.admin import TenantAdmin


class _Clock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


def _set_running_limit(env: LambdaEnv, limit: int) -> None:
    admin = TenantAdmin(DynamoTenantStore(env.clients.dynamodb, env.table), _Clock())
    admin.update_quotas(TENANT, {"max_running_executions": limit})


def _invokes(env: LambdaEnv) -> list[dict[str, Any]]:
    """The INVOKE timers waiting in the work queue (taken from it)."""
    got = env.clients.sqs.receive_message(
        QueueUrl=env.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    return [m for m in got if json.loads(m["Body"])["kind"] == "INVOKE"]  # type: ignore[typeddict-item]


def _batch(messages: list[dict[str, Any]]) -> dict[str, Any]:
    event = copy.deepcopy(load_event("sqs_timer_batch"))
    template = event["Records"][0]
    event["Records"] = [
        {
            **template,
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
        }
        for m in messages
    ]
    return event


def test_the_batch_that_closes_an_execution_promotes_the_next_queued_start(
    lambda_env: LambdaEnv, context: Context
) -> None:
    create_function(lambda_env, "wf")
    _set_running_limit(lambda_env, 1)
    first = start(lambda_env, "wf", {"n": 1})
    second = start(lambda_env, "wf", {"n": 2})
    assert execution(lambda_env, second)["Status"] == "QUEUED"
    (invoke,) = _invokes(lambda_env)  # the queued start sent nothing
    assert json.loads(invoke["Body"])["arn"] == first

    assert orchestrator.handler(_batch([invoke]), context) == {"batchItemFailures": []}

    assert execution(lambda_env, first)["Status"] == "SUCCEEDED"
    assert execution(lambda_env, second)["Status"] == "RUNNING"
    (promoted,) = _invokes(lambda_env)
    assert json.loads(promoted["Body"])["arn"] == second
    orchestrator.handler(_batch([promoted]), context)
    assert json.loads(execution(lambda_env, second)["Result"]) == {"doubled": 4}


def test_the_sweep_promotes_queued_starts_once_capacity_is_raised(
    lambda_env: LambdaEnv, context: Context
) -> None:
    create_function(lambda_env, "wf")
    _set_running_limit(lambda_env, 0)
    arns = [start(lambda_env, "wf", {"n": n}) for n in range(3)]
    assert [execution(lambda_env, a)["Status"] for a in arns] == ["QUEUED"] * 3
    sweep.handler(load_event("eventbridge_scheduled"), context)
    assert [execution(lambda_env, a)["Status"] for a in arns] == ["QUEUED"] * 3

    _set_running_limit(lambda_env, 2)
    sweep.handler(load_event("eventbridge_scheduled"), context)

    # FIFO: the two oldest run, the third waits for capacity.
    assert [execution(lambda_env, a)["Status"] for a in arns] == ["RUNNING", "RUNNING", "QUEUED"]


def test_a_stop_through_the_api_promotes_the_next_queued_start_before_it_answers(
    lambda_env: LambdaEnv,
) -> None:
    create_function(lambda_env, "wf")
    _set_running_limit(lambda_env, 1)
    first = start(lambda_env, "wf", {"n": 1})
    second = start(lambda_env, "wf", {"n": 2})
    assert execution(lambda_env, second)["Status"] == "QUEUED"
    _invokes(lambda_env)  # the first one's, taken away

    status, _, body = call(
        lambda_env, "POST", f"/2025-12-01/durable-executions/{quote(first, safe='')}/stop", {}
    )
    assert status == 200, body

    # Not at the next batch or sweep (up to a minute later): the stop's own call.
    assert execution(lambda_env, first)["Status"] == "STOPPED"
    assert execution(lambda_env, second)["Status"] == "RUNNING"
    (promoted,) = _invokes(lambda_env)
    assert json.loads(promoted["Body"])["arn"] == second
