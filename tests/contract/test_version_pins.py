"""Garbage collection's fence on both backends: a function version (or a function) that
an execution not yet closed is pinned to is never deleted by `delete(unless_pinned=True)`,
and `live_pins` tells which are pinned. The pins are moved by the execution store's own
commits, so each backend's two stores share one database (SQLite file, DynamoDB table)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.contract.test_execution_store import _aws_env, _close, _start
from tests.contract.test_function_store import _fn

from treadle.adapters.aws import create_tables, function_deletes
from treadle.adapters.aws.dynamodb_executions import DynamoExecutionStore
from treadle.adapters.aws.dynamodb_functions import DynamoFunctionStore
from treadle.adapters.aws.version_pins import read_pins
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.domain.errors import Conflict, NotFound
from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import ExecutionStore, FunctionStore

T = "123456789012"
TABLE = "treadle-test"
BUCKET = "treadle-payloads"
REGION = "us-east-1"


@dataclass
class Stores:
    functions: FunctionStore
    executions: ExecutionStore


def _sqlite(tmp: Path) -> tuple[Stores, Callable[[], None]]:
    db = Database(tmp / "treadle.db")
    return Stores(SqliteFunctionStore(db), SqliteExecutionStore(db)), db.close


def _dynamodb(_tmp: Path) -> tuple[Stores, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    create_tables(dynamodb, TABLE)
    s3.create_bucket(Bucket=BUCKET)
    stores = Stores(
        DynamoFunctionStore(dynamodb, TABLE),
        DynamoExecutionStore(dynamodb, TABLE, s3_client=s3, bucket=BUCKET),
    )
    return stores, lambda: mock.__exit__(None, None, None)


BACKENDS = {"sqlite": _sqlite, "dynamodb": _dynamodb}


@pytest.fixture(params=sorted(BACKENDS))
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stores]:
    _aws_env(monkeypatch)
    instance, cleanup = BACKENDS[request.param](tmp_path)
    yield instance
    cleanup()


def _function_with_versions(functions: FunctionStore, count: int) -> None:
    functions.put_latest(_fn("f"), create=True)
    for i in range(count):
        if i:
            latest = functions.get(T, "f")
            functions.put_latest(
                latest.model_copy(update={"revision_id": f"r{i}", "code_sha256": f"c{i}"}),
                create=False,
            )
        functions.publish(T, "f", None)


def test_a_version_pinned_by_a_running_execution_is_not_deleted(stores: Stores) -> None:
    _function_with_versions(stores.functions, 2)
    _start(stores.executions, "pinned", function="f", version="1")
    assert stores.functions.live_pins(T, "f") == {"1": 1}
    with pytest.raises(Conflict):
        stores.functions.delete(T, "f", "1", unless_pinned=True)
    assert stores.functions.get(T, "f", "1").version == "1"
    stores.functions.delete(T, "f", "2", unless_pinned=True)  # nothing pins it
    with pytest.raises(NotFound):
        stores.functions.get(T, "f", "2")


def test_a_closed_execution_releases_its_pin(stores: Stores) -> None:
    _function_with_versions(stores.functions, 1)
    a = _start(stores.executions, "a", function="f", version="1")
    b = _start(stores.executions, "b", function="f", version="1")
    assert stores.functions.live_pins(T, "f") == {"1": 2}
    _close(stores.executions, a.arn, ExecutionStatus.SUCCEEDED)
    assert stores.functions.live_pins(T, "f") == {"1": 1}
    with pytest.raises(Conflict):
        stores.functions.delete(T, "f", "1", unless_pinned=True)
    _close(stores.executions, b.arn, ExecutionStatus.STOPPED)
    assert stores.functions.live_pins(T, "f") == {}
    stores.functions.delete(T, "f", "1", unless_pinned=True)
    assert stores.functions.counts(T).versions == 0


def test_a_paused_execution_pins_its_version(stores: Stores) -> None:
    _function_with_versions(stores.functions, 1)
    run = _start(stores.executions, "paused", function="f", version="1")
    _close(stores.executions, run.arn, ExecutionStatus.PAUSED)  # not closed: it may resume
    assert stores.functions.live_pins(T, "f") == {"1": 1}
    with pytest.raises(Conflict):
        stores.functions.delete(T, "f", "1", unless_pinned=True)


def test_a_function_with_a_live_execution_on_any_version_is_not_deleted(stores: Stores) -> None:
    _function_with_versions(stores.functions, 1)
    run = _start(stores.executions, "on-latest", function="f", version="$LATEST")
    with pytest.raises(Conflict):
        stores.functions.delete(T, "f", unless_pinned=True)
    assert stores.functions.get(T, "f").function_name == "f"
    _close(stores.executions, run.arn, ExecutionStatus.FAILED)
    stores.functions.delete(T, "f", unless_pinned=True)
    with pytest.raises(NotFound):
        stores.functions.get(T, "f")
    assert stores.functions.counts(T).functions == 0


def test_without_unless_pinned_a_delete_ignores_pins_as_before(stores: Stores) -> None:
    _function_with_versions(stores.functions, 1)
    _start(stores.executions, "x", function="f", version="1")
    stores.functions.delete(T, "f", "1")  # DeleteFunction's behaviour, as on Lambda
    with pytest.raises(NotFound):
        stores.functions.get(T, "f", "1")


def test_pins_are_per_tenant_and_per_function(stores: Stores) -> None:
    _function_with_versions(stores.functions, 1)
    _start(stores.executions, "elsewhere", function="g", version="1")
    _start(stores.executions, "other", function="f", version="1", tenant="210987654321")
    assert stores.functions.live_pins(T, "f") == {}
    stores.functions.delete(T, "f", "1", unless_pinned=True)


# -- what only the DynamoDB adapter has ------------------------------------------------


def test_dynamodb_the_pin_is_checked_in_the_delete_transaction_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pins read before the transaction may be stale (an execution started just
    after): the transaction's ConditionChecks still refuse the delete."""
    _aws_env(monkeypatch)
    stores, cleanup = _dynamodb(tmp_path)
    try:
        _function_with_versions(stores.functions, 1)
        _start(stores.executions, "just-started", function="f", version="1")
        reads: list[int] = []

        def stale_then_true(table: Any, tenant: str, name: str) -> dict[str, int]:
            reads.append(1)
            return {} if len(reads) == 1 else read_pins(table, tenant, name)

        monkeypatch.setattr(function_deletes, "read_pins", stale_then_true)
        with pytest.raises(Conflict):
            stores.functions.delete(T, "f", "1", unless_pinned=True)
        assert stores.functions.get(T, "f", "1").version == "1"
        assert stores.functions.counts(T).versions == 1
    finally:
        cleanup()
