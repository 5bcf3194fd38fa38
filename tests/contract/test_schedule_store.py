"""One contract for every ScheduleStore adapter: SQLite (embedded) and DynamoDB (AWS).

Adding an adapter is one entry in STORES: a factory taking a fresh temporary directory
and returning (store, another store over the same data, cleanup). The DynamoDB adapter
runs against moto (`mock_aws`, a fresh account per test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from treadle.adapters.aws import DynamoExecutionStore, create_tables
from treadle.adapters.aws.dynamodb_schedules import DynamoScheduleStore
from treadle.adapters.sqlite.schedules import SqliteScheduleStore
from treadle.domain.errors import AlreadyExists, ConcurrentModification, InvalidParameter, NotFound
from treadle.domain.schedules import Firing, Outcome, Schedule, ScheduleStore

REGION = "us-east-1"
TABLE = "treadle-test"
A, B = "111111111111", "222222222222"
NOW = 1_700_000_000_000


@dataclass
class Stores:
    store: ScheduleStore
    another: Callable[[], ScheduleStore]  # a second scheduler over the same data
    client: Any = None


def _sqlite(tmp: Path) -> tuple[Stores, Callable[[], None]]:
    made: list[SqliteScheduleStore] = [SqliteScheduleStore(tmp / "schedules.db")]

    def another() -> ScheduleStore:
        made.append(SqliteScheduleStore(tmp / "schedules.db"))
        return made[-1]

    def close() -> None:
        for s in made:
            s.close()

    return Stores(made[0], another), close


def _dynamodb(_tmp: Path) -> tuple[Stores, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    client = boto3.client("dynamodb", region_name=REGION)
    create_tables(client, TABLE)
    stores = Stores(
        DynamoScheduleStore(client, TABLE), lambda: DynamoScheduleStore(client, TABLE), client
    )
    return stores, lambda: mock.__exit__(None, None, None)


STORES: dict[str, Callable[[Path], tuple[Stores, Callable[[], None]]]] = {
    "sqlite": _sqlite,
    "dynamodb": _dynamodb,
}


@pytest.fixture(params=sorted(STORES))
def stores(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stores]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    made, cleanup = STORES[request.param](tmp_path)
    yield made
    cleanup()


@pytest.fixture
def store(stores: Stores) -> ScheduleStore:
    return stores.store


def _schedule(name: str = "nightly", tenant: str = A, due: int | None = NOW, **kw: Any) -> Schedule:
    fields: dict[str, Any] = {
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "function_name": "f",
        "input_payload": '{"n":1}',
        "created_ms": NOW - 1,
        "next_fire_ms": due,
        "due_ms": due,
    }
    return Schedule(tenant=tenant, name=name, **{**fields, **kw})


def test_a_created_schedule_is_read_back_exactly_at_version_one(store: ScheduleStore) -> None:
    firing = Firing(fire_ms=NOW, outcome=Outcome.SKIPPED, at_ms=NOW, reason="busy")
    made = _schedule(recent=[firing], buffered_fire_ms=NOW - 60_000)
    store.create(made)
    assert store.get(A, "nightly") == made.model_copy(update={"version": 1})


def test_a_second_schedule_of_the_same_name_is_refused(store: ScheduleStore) -> None:
    store.create(_schedule())
    with pytest.raises(AlreadyExists):
        store.create(_schedule(cron="* * * * *"))


def test_schedules_are_per_tenant(store: ScheduleStore) -> None:
    store.create(_schedule())
    store.create(_schedule(tenant=B))  # the same name in another tenant is another schedule
    with pytest.raises(NotFound):
        store.get("333333333333", "nightly")
    assert [s.tenant for s in store.list_page(B, 10, None)[0]] == [B]


def test_a_replace_expects_the_version_it_read(store: ScheduleStore) -> None:
    store.create(_schedule())
    read = store.get(A, "nightly")
    written = store.replace(read.model_copy(update={"paused": True, "due_ms": None}))
    assert written.version == 2 and store.get(A, "nightly") == written
    with pytest.raises(ConcurrentModification):
        store.replace(read.model_copy(update={"next_fire_ms": NOW + 1}))
    assert store.get(A, "nightly").paused


def test_of_two_schedulers_advancing_the_same_read_only_one_wins(stores: Stores) -> None:
    stores.store.create(_schedule())
    one, two = stores.store, stores.another()
    read_one, read_two = one.get(A, "nightly"), two.get(A, "nightly")
    one.replace(read_one.model_copy(update={"next_fire_ms": NOW + 86_400_000}))
    with pytest.raises(ConcurrentModification):
        two.replace(read_two.model_copy(update={"next_fire_ms": NOW + 86_400_000}))


def test_replacing_or_deleting_a_missing_schedule_is_not_found(store: ScheduleStore) -> None:
    with pytest.raises(NotFound):
        store.replace(_schedule().model_copy(update={"version": 1}))
    with pytest.raises(NotFound):
        store.delete(A, "nightly")
    store.create(_schedule())
    store.delete(A, "nightly")
    with pytest.raises(NotFound):
        store.get(A, "nightly")


def test_a_tenants_schedules_are_listed_by_name_in_pages(store: ScheduleStore) -> None:
    for name in ["c", "a", "e", "b", "d"]:
        store.create(_schedule(name))
    store.create(_schedule("z", tenant=B))
    first, marker = store.list_page(A, 2, None)
    assert [s.name for s in first] == ["a", "b"] and marker is not None
    second, marker = store.list_page(A, 2, marker)
    third, last = store.list_page(A, 2, marker)
    assert [s.name for s in second + third] == ["c", "d", "e"] and last is None


def test_a_list_limit_below_one_is_refused(store: ScheduleStore) -> None:
    with pytest.raises(InvalidParameter):
        store.list_page(A, 0, None)


def test_due_schedules_come_earliest_first_across_tenants_and_paused_ones_never(
    store: ScheduleStore,
) -> None:
    store.create(_schedule("later", due=NOW + 10))
    store.create(_schedule("early", tenant=B, due=NOW - 10))
    store.create(_schedule("now", due=NOW))
    store.create(_schedule("future", due=NOW + 60_000))
    store.create(_schedule("paused", due=None, paused=True))
    assert [s.name for s in store.due(NOW + 10, 10)] == ["early", "now", "later"]
    assert [s.name for s in store.due(NOW + 10, 2)] == ["early", "now"]
    assert store.next_due_ms() == NOW - 10


def test_a_schedule_advanced_past_now_is_no_longer_due(store: ScheduleStore) -> None:
    store.create(_schedule())
    read = store.get(A, "nightly")
    store.replace(read.model_copy(update={"due_ms": NOW + 86_400_000}))
    assert store.due(NOW, 10) == []
    assert store.next_due_ms() == NOW + 86_400_000
    paused = store.get(A, "nightly")
    store.replace(paused.model_copy(update={"paused": True, "due_ms": None}))
    assert store.next_due_ms() is None


def test_nothing_is_due_in_an_empty_store(store: ScheduleStore) -> None:
    assert store.due(NOW, 10) == [] and store.next_due_ms() is None


# -- the DynamoDB adapter's own ----------------------------------------------------------


def test_schedules_share_the_due_index_without_showing_up_as_timers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made, cleanup = _dynamodb(tmp_path)
    try:
        made.store.create(_schedule())
        executions = DynamoExecutionStore(made.client, TABLE)
        assert executions.due_timers(NOW + 1, 100) == []
        assert executions.next_due_ms() is None
    finally:
        cleanup()
