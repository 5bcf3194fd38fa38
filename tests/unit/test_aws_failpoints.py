"""The AWS backend's failpoints (adapters/aws/failpoint_hooks.py, the timer boundary of
sqs_dispatcher) and the fault layer the AWS fault matrix injects with
(support/aws_faults.py): each does what the slow tests rely on it doing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from support.aws_faults import FAULTS, Fault, Injector, read_log
from treadle import failpoints
from treadle.adapters.aws import DynamoExecutionStore, create_tables, failpoint_hooks
from treadle.adapters.aws import sqs_dispatcher as sqs
from treadle.adapters.aws.dynamo import Table
from treadle.adapters.aws.errors import transaction_error
from treadle.domain.errors import ConcurrentModification, Throttled, Unavailable
from treadle.domain.ports import Timer, TimerKind
from treadle.failpoints import Kind, Position

TABLE = "treadle-fp"
REGION = "us-east-1"


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_tables(client, TABLE)
        yield client


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Kind, Position]]:
    """Every boundary met, in order (a failpoint that records instead of crashing)."""
    met: list[tuple[Kind, Position]] = []
    monkeypatch.setattr(failpoints, "boundary", lambda kind, pos: met.append((kind, pos)))
    monkeypatch.setattr(sqs, "boundary", lambda kind, pos: met.append((kind, pos)))
    return met


def _put(ddb: Any, pk: str) -> None:
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": "x"}})


def test_without_a_failpoint_no_hook_is_registered(
    ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not failpoints.enabled()
    failpoint_hooks.register(ddb)
    met: list[object] = []
    # Turned on after the client was made: a hook registered anyway would report here.
    monkeypatch.setattr(failpoints, "boundary", lambda *args: met.append(args))
    _put(ddb, "a")
    assert met == []


def test_every_dynamodb_write_is_a_commit_boundary_and_reads_are_not(
    ddb: Any, seen: list[tuple[Kind, Position]]
) -> None:
    failpoint_hooks.register(ddb)
    _put(ddb, "a")
    ddb.get_item(TableName=TABLE, Key={"pk": {"S": "a"}, "sk": {"S": "x"}})
    ddb.transact_write_items(
        TransactItems=[
            {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "a"}, "sk": {"S": "x"}}}}
        ]
    )
    assert seen == [(Kind.COMMIT, "before"), (Kind.COMMIT, "after")] * 2


def test_a_timer_handed_to_the_engine_is_a_timer_boundary(
    seen: list[tuple[Kind, Position]],
) -> None:
    timer = Timer("arn:x", TimerKind.WAIT, "op", 1)
    record = {"messageId": "m1", "body": sqs.encode_timer(timer)}
    fired: list[Timer] = []

    def fire(t: Timer) -> None:
        seen_then = list(seen)
        assert seen_then[-1] == (Kind.TIMER, "before")
        fired.append(t)

    assert sqs.handle_messages([record], fire) == []
    assert fired == [timer] and seen == [(Kind.TIMER, "before"), (Kind.TIMER, "after")]


def _injector(tmp_path: Path, fault: Fault) -> Injector:
    tmp_path.mkdir(parents=True, exist_ok=True)
    arm = tmp_path / "armed"
    arm.touch()
    return Injector(fault, 1, tmp_path / "log.jsonl", arm)


def _always(name: str) -> Fault:
    return replace(FAULTS[name], rate=1.0, limit=1)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("ddb-throttled", Throttled),
        ("ddb-timeout", Unavailable),
    ],
)
def test_an_injected_dynamodb_fault_reaches_the_adapter_as_a_retryable_domain_error(
    ddb: Any, tmp_path: Path, fault: str, expected: type[Exception]
) -> None:
    _injector(tmp_path, _always(fault)).install(ddb, "dynamodb")
    store = DynamoExecutionStore(ddb, TABLE)
    with pytest.raises(expected) as raised:
        store.get("arn:aws:lambda:us-east-1:1:function:f:$LATEST/durable-execution/a/b")
    assert getattr(raised.value, "retryable", False)
    assert [line["fault"] for line in read_log(tmp_path / "log.jsonl")] == [fault]


def test_an_injected_transaction_conflict_names_one_reason_per_item(
    ddb: Any, tmp_path: Path
) -> None:
    _injector(tmp_path, _always("ddb-transaction-conflict")).install(ddb, "dynamodb")
    item = {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "a"}, "sk": {"S": "x"}}}}
    with pytest.raises(ddb.exceptions.TransactionCanceledException) as raised:
        ddb.transact_write_items(TransactItems=[item, {**item}])
    reasons = [r["Code"] for r in raised.value.response["CancellationReasons"]]
    assert reasons == ["TransactionConflict", "None"]
    error = transaction_error(raised.value, "t", ["a", "b"], lambda _: AssertionError())
    assert isinstance(error, ConcurrentModification) and error.retryable


def _add_one(table: Table) -> None:
    key = {"pk": {"S": "n"}, "sk": {"S": "x"}}
    update = {"TableName": TABLE, "Key": key, "UpdateExpression": "ADD n :one"}
    table.transact([{"Update": {**update, "ExpressionAttributeValues": {":one": {"N": "1"}}}}])


def test_a_transaction_whose_answer_was_lost_is_resent_with_its_token_and_applied_once(
    ddb: Any, tmp_path: Path
) -> None:
    _injector(tmp_path, replace(FAULTS["ddb-answer-lost"], rate=1.0, limit=2)).install(
        ddb, "dynamodb"
    )
    table = Table(ddb, TABLE)
    _add_one(table)  # applied, answer lost, resent: DynamoDB answers the first's outcome
    got = ddb.get_item(TableName=TABLE, Key={"pk": {"S": "n"}, "sk": {"S": "x"}})["Item"]
    assert got["n"] == {"N": "1"}
    assert len(read_log(tmp_path / "log.jsonl")) == 2  # and the resend's was lost too


def test_a_transaction_that_never_answers_is_unavailable_not_a_botocore_error(
    ddb: Any, tmp_path: Path
) -> None:
    _injector(tmp_path, replace(FAULTS["ddb-answer-lost"], rate=1.0, limit=99)).install(
        ddb, "dynamodb"
    )
    with pytest.raises(Unavailable) as raised:
        _add_one(Table(ddb, TABLE))
    assert raised.value.retryable


def test_a_lost_answer_is_a_timeout_after_the_write_applied(ddb: Any, tmp_path: Path) -> None:
    _injector(tmp_path, _always("ddb-answer-lost")).install(ddb, "dynamodb")
    with pytest.raises(Exception, match="answer lost"):
        _put(ddb, "kept")
    assert "Item" in ddb.get_item(TableName=TABLE, Key={"pk": {"S": "kept"}, "sk": {"S": "x"}})


@pytest.mark.parametrize("fault", ["sqs-concurrent", "sqs-twice"])
def test_an_sqs_delivery_comes_twice_at_once_or_at_the_next_receive(
    tmp_path: Path, fault: str
) -> None:
    with mock_aws():
        client = boto3.client("sqs", region_name=REGION)
        url = client.create_queue(QueueName="q")["QueueUrl"]
        _injector(tmp_path, _always(fault)).install(client, "sqs")
        client.send_message(QueueUrl=url, MessageBody="timer")
        first = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        again = client.receive_message(QueueUrl=url).get("Messages", [])
    if fault == "sqs-concurrent":  # one receive hands the message to two consumers
        assert [m["MessageId"] for m in first] == [first[0]["MessageId"]] * 2
        assert again == []
    else:
        assert len(first) == 1 and [m["MessageId"] for m in again] == [first[0]["MessageId"]]
        assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
