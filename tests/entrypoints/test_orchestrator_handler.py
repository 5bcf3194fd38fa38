"""The orchestrator handler: a recorded SQS batch (one real timer, one malformed record)."""

from __future__ import annotations

import copy
import json

from support.lambda_calls import create_function, execution, start
from support.lambda_events import Context, LambdaEnv, load_event
from treadle.entrypoints import orchestrator
from treadle.platform.loops import retry_backoff_s


def _received(env: LambdaEnv) -> list[dict[str, str]]:
    return env.clients.sqs.receive_message(  # type: ignore[return-value]
        QueueUrl=env.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])


def test_a_batch_fires_its_timers_and_reports_the_malformed_record(
    lambda_env: LambdaEnv, context: Context
) -> None:
    create_function(lambda_env, "wf")
    arn = start(lambda_env, "wf", {"n": 21})
    # The start sent the execution's first INVOKE timer to the queue: take it from there.
    (message,) = _received(lambda_env)
    assert json.loads(message["Body"])["kind"] == "INVOKE"
    event = copy.deepcopy(load_event("sqs_timer_batch"))
    good, bad = event["Records"]
    good.update(
        messageId=message["MessageId"],
        receiptHandle=message["ReceiptHandle"],
        body=message["Body"],
    )

    response = orchestrator.handler(event, context)

    # Only the malformed record comes back (for the dead-letter queue, after retries).
    assert response == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}
    # The timer drove the execution: its handler ran (in the local sandbox) to the end.
    ex = execution(lambda_env, arn)
    assert ex["Status"] == "SUCCEEDED", ex
    assert json.loads(ex["Result"]) == {"doubled": 42}


def test_a_stale_timer_is_acknowledged_without_firing(
    lambda_env: LambdaEnv, context: Context
) -> None:
    event = copy.deepcopy(load_event("sqs_timer_batch"))
    event["Records"] = event["Records"][:1]  # the recorded timer names no stored execution
    assert orchestrator.handler(event, context) == {"batchItemFailures": []}


def test_backoff_grows_and_is_capped() -> None:
    assert [retry_backoff_s(n) for n in (1, 2, 3, 20)] == [2, 4, 8, 900]
