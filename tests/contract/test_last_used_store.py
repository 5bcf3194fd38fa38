"""One contract for every LastUsedStore adapter: SQLite (embedded) and DynamoDB (AWS,
moto with `mock_aws` per test). Last use is coarse: at most one write a minute."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.contract.test_execution_store import _aws_env

from treadle.adapters.aws import create_tables
from treadle.adapters.aws.dynamodb_last_used import DynamoLastUsed
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.last_used import SqliteLastUsed
from treadle.domain.ports import LastUsedStore
from treadle.domain.usage import FACET, FUNCTION_VERSION, REPOSITORY

A, B = "111111111111", "222222222222"
NOW = 1_700_000_000_000
MINUTE = 60_000


def _sqlite(tmp: Path) -> tuple[LastUsedStore, Callable[[], None]]:
    db = Database(tmp / "treadle.db")
    return SqliteLastUsed(db), db.close


def _dynamodb(_tmp: Path) -> tuple[LastUsedStore, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_tables(client, "treadle-test")
    return DynamoLastUsed(client, "treadle-test"), lambda: mock.__exit__(None, None, None)


STORES = {"sqlite": _sqlite, "dynamodb": _dynamodb}


@pytest.fixture(params=sorted(STORES))
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LastUsedStore]:
    _aws_env(monkeypatch)
    made, cleanup = STORES[request.param](tmp_path)
    yield made
    cleanup()


def test_a_first_use_is_recorded_and_uses_within_a_minute_write_nothing(
    store: LastUsedStore,
) -> None:
    assert store.touch(A, FUNCTION_VERSION, "f:1", NOW) is True
    assert store.touch(A, FUNCTION_VERSION, "f:1", NOW + 1_000) is False
    assert store.touch(A, FUNCTION_VERSION, "f:1", NOW + MINUTE) is False  # not older yet
    assert store.last_used(A, FUNCTION_VERSION) == {"f:1": NOW}
    assert store.touch(A, FUNCTION_VERSION, "f:1", NOW + MINUTE + 1) is True
    assert store.last_used(A, FUNCTION_VERSION) == {"f:1": NOW + MINUTE + 1}


def test_an_older_use_never_moves_the_time_back(store: LastUsedStore) -> None:
    store.touch(A, FACET, "notes", NOW)
    assert store.touch(A, FACET, "notes", NOW - 10 * MINUTE) is False
    assert store.last_used(A, FACET) == {"notes": NOW}


def test_records_are_per_tenant_and_kind_and_forgotten_on_delete(store: LastUsedStore) -> None:
    store.touch(A, REPOSITORY, "site", NOW)
    store.touch(A, FACET, "site", NOW + 1)
    store.touch(B, REPOSITORY, "site", NOW + 2)
    assert store.last_used(A, REPOSITORY) == {"site": NOW}
    assert store.last_used(A, FACET) == {"site": NOW + 1}
    assert store.last_used(B, REPOSITORY) == {"site": NOW + 2}
    store.forget(A, REPOSITORY, "site")
    store.forget(A, REPOSITORY, "site")  # twice: nothing to forget, no error
    assert store.last_used(A, REPOSITORY) == {}
    assert store.last_used(B, REPOSITORY) == {"site": NOW + 2}
