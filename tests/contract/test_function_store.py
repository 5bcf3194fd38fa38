"""One contract for every FunctionStore adapter: SQLite (embedded) and DynamoDB (AWS).

Adding an adapter is one entry in STORES: a factory taking a fresh temporary directory
and returning (store, cleanup). The DynamoDB adapter runs against moto (`mock_aws`, a
fresh account per test). Tests at the end exercise what only the DynamoDB adapter has.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from treadle.adapters.aws import create_tables
from treadle.adapters.aws.dynamodb_functions import DynamoFunctionStore
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.domain.errors import AlreadyExists, InvalidParameter, NotFound
from treadle.domain.models import DurableConfig
from treadle.domain.ports import CodeSource, FunctionStore, FunctionVersion
from treadle.domain.usage import FunctionCounts

Factory = Callable[[Path], tuple[Any, Callable[[], None]]]

T = "123456789012"
OTHER = "210987654321"
REGION = "us-east-1"
TABLE = "treadle-test"
LATEST = "$LATEST"


def _sqlite(tmp: Path) -> tuple[Any, Callable[[], None]]:
    db = Database(tmp / "functions.db")
    return SqliteFunctionStore(db), db.close


def _dynamodb(_tmp: Path) -> tuple[Any, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    client = boto3.client("dynamodb", region_name=REGION)
    create_tables(client, TABLE)
    # No wait between the code counts' two backfill passes (test_code_refs tests it).
    store = DynamoFunctionStore(client, TABLE, code_backfill_second_pass_ms=0)
    return store, lambda: mock.__exit__(None, None, None)


def _sqlite_sole_writer(tmp: Path) -> tuple[Any, Callable[[], None]]:
    # One server process: its cache follows its own writes without reading the file's.
    db = Database(tmp / "functions.db")
    return SqliteFunctionStore(db, sole_writer=True), db.close


STORES: dict[str, Factory] = {
    "sqlite": _sqlite,
    "sqlite-sole-writer": _sqlite_sole_writer,
    "dynamodb": _dynamodb,
}


def _sqlite_processes(tmp: Path) -> tuple[Any, Any, Callable[[], None]]:
    # Two server processes: each its own connection and cache on one file.
    first, second = Database(tmp / "functions.db"), Database(tmp / "functions.db")

    def close() -> None:
        first.close()
        second.close()

    return SqliteFunctionStore(first), SqliteFunctionStore(second), close


def _dynamodb_processes(tmp: Path) -> tuple[Any, Any, Callable[[], None]]:
    store, cleanup = _dynamodb(tmp)
    there = DynamoFunctionStore(boto3.client("dynamodb", region_name=REGION), TABLE)
    return store, there, cleanup


# Two writers of the same functions, as two processes of one server (or two Lambdas).
PROCESSES: dict[str, Callable[[Path], tuple[Any, Any, Callable[[], None]]]] = {
    "sqlite-processes": _sqlite_processes,
    "dynamodb": _dynamodb_processes,
}


def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach a real account or an endpoint configured in the environment.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # moto applies a request without isolation from concurrent ones (a failed
    # transaction restores a copy of the table taken before it began, undoing what
    # other threads wrote meanwhile); DynamoDB applies each atomically. Serialize
    # moto's requests so the concurrency tests exercise the adapter, not moto.
    lock = threading.RLock()
    process = BotocoreStubber.process_request

    def serialized(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return process(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", serialized)


@pytest.fixture(params=sorted(STORES))
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FunctionStore]:
    _aws_env(monkeypatch)
    instance, cleanup = STORES[request.param](tmp_path)
    yield instance
    cleanup()


def _fn(name: str = "fn", tenant: str = T, **changes: Any) -> FunctionVersion:
    fields: dict[str, Any] = {
        "tenant": tenant,
        "function_name": name,
        "version": LATEST,
        "function_arn": f"arn:aws:lambda:{REGION}:{tenant}:function:{name}",
        "handler": "app.handler",
        "code_sha256": "c2hhMjU2",
        "code_size": 123,
        "code_key": "ab" * 32,
        "last_modified_ms": 1_700_000_000_000,
        "revision_id": uuid.uuid4().hex,
    }
    return FunctionVersion(**{**fields, **changes})


def _changed(store: FunctionStore, name: str = "fn", tenant: str = T, **changes: Any) -> None:
    """A new $LATEST (a new revision), as UpdateFunctionCode/Configuration make."""
    current = store.get(tenant, name)
    store.put_latest(
        current.model_copy(update={"revision_id": uuid.uuid4().hex, **changes}), create=False
    )


# -- $LATEST -------------------------------------------------------------------------


def test_create_get_and_replace_latest(store: FunctionStore) -> None:
    with pytest.raises(NotFound):
        store.get(T, "fn")
    with pytest.raises(NotFound):  # create=False refuses a function that does not exist
        store.put_latest(_fn(), create=False)
    fn = _fn()
    store.put_latest(fn, create=True)
    assert store.get(T, "fn") == fn
    assert store.get(T, "fn", LATEST) == fn
    with pytest.raises(AlreadyExists):  # create=True refuses one that does
        store.put_latest(_fn(handler="other.handler"), create=True)
    assert store.get(T, "fn") == fn
    replaced = fn.model_copy(update={"timeout_s": 60, "revision_id": "r2"})
    store.put_latest(replaced, create=False)
    assert store.get(T, "fn") == replaced
    for missing in ("1", "0", "01", "x"):
        with pytest.raises(NotFound):
            store.get(T, "fn", missing)


@pytest.fixture(params=sorted(PROCESSES))
def processes(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FunctionStore, FunctionStore]]:
    _aws_env(monkeypatch)
    here, there, cleanup = PROCESSES[request.param](tmp_path)
    yield here, there
    cleanup()


def test_what_another_process_replaces_or_deletes_is_not_served_from_cache(
    processes: tuple[FunctionStore, FunctionStore],
) -> None:
    here, there = processes
    there.put_latest(_fn(), create=True)
    there.publish(T, "fn", None)
    assert here.get(T, "fn").handler == "app.handler"  # now cached here
    assert here.get(T, "fn", "1").version == "1"
    replaced = _fn(handler="other.handler")
    there.put_latest(replaced, create=False)
    assert here.get(T, "fn") == replaced
    there.delete(T, "fn", "1")
    with pytest.raises(NotFound):
        here.get(T, "fn", "1")
    there.delete(T, "fn")
    with pytest.raises(NotFound):
        here.get(T, "fn")


def test_the_whole_model_round_trips(store: FunctionStore) -> None:
    fn = _fn(
        runtime="python3.12",
        role="arn:aws:iam::123456789012:role/r",
        description="d",
        timeout_s=900,
        memory_mb=2048,
        environment={"A": "1", "B": "é"},
        durable_config=DurableConfig(),
        commit_sha="0" * 40,
        source=CodeSource(repository="functions", ref="main", path="fn", commit_sha="1" * 40),
    )
    store.put_latest(fn, create=True)
    assert store.get(T, "fn") == fn
    published = store.publish(T, "fn", None)
    assert published == fn.model_copy(update={"version": "1"})
    assert store.get(T, "fn", "1") == published


# -- versions --------------------------------------------------------------------------


def test_publish_freezes_latest_as_the_next_number(store: FunctionStore) -> None:
    with pytest.raises(NotFound):
        store.publish(T, "fn", None)
    fn = _fn(description="latest")
    store.put_latest(fn, create=True)
    v1 = store.publish(T, "fn", None)
    assert v1.version == "1" and v1.description == "latest"
    assert v1 == fn.model_copy(update={"version": "1"})
    # Unchanged $LATEST: the version that has it, not a new one (PublishVersion).
    assert store.publish(T, "fn", "ignored") == v1
    _changed(store, timeout_s=30)
    v2 = store.publish(T, "fn", "second")
    assert v2.version == "2" and v2.description == "second" and v2.timeout_s == 30
    assert store.get(T, "fn", "1") == v1 and store.get(T, "fn", "2") == v2
    assert store.get(T, "fn").version == LATEST  # $LATEST stays $LATEST
    assert store.get(T, "fn").description == "latest"


def test_list_latest_pages_in_name_order(store: FunctionStore) -> None:
    names = [f"fn-{i:02d}" for i in range(25)]
    for name in reversed(names):
        store.put_latest(_fn(name), create=True)
    store.put_latest(_fn("zzz", tenant=OTHER), create=True)
    seen: list[str] = []
    marker: str | None = None
    pages = 0
    while True:
        page, marker = store.list_latest(T, marker, 10)
        assert all(f.version == LATEST and f.tenant == T for f in page)
        seen += [f.function_name for f in page]
        pages += 1
        if marker is None:
            break
    assert seen == names and pages == 3
    everything, last = store.list_latest(T, None, 25)
    assert [f.function_name for f in everything] == names and last is None
    assert [f.function_name for f in store.list_latest(OTHER, None, 50)[0]] == ["zzz"]
    assert store.list_latest("999999999999", None, 50) == ([], None)


def test_list_versions_pages_from_latest_up(store: FunctionStore) -> None:
    with pytest.raises(NotFound):
        store.list_versions(T, "fn", None, 10)
    store.put_latest(_fn(), create=True)
    for _ in range(5):
        store.publish(T, "fn", None)
        _changed(store)
    pages: list[list[str]] = []
    marker: str | None = None
    while True:
        page, marker = store.list_versions(T, "fn", marker, 2)
        pages.append([f.version for f in page])
        if marker is None:
            break
    assert pages == [[LATEST, "1"], ["2", "3"], ["4", "5"]]
    whole, last = store.list_versions(T, "fn", None, 50)
    assert [f.version for f in whole] == [LATEST, "1", "2", "3", "4", "5"] and last is None
    with pytest.raises(InvalidParameter):
        store.list_versions(T, "fn", "not-a-number", 2)


def test_delete_a_version_or_the_whole_function(store: FunctionStore) -> None:
    store.put_latest(_fn(), create=True)
    for _ in range(3):
        store.publish(T, "fn", None)
        _changed(store)
    store.delete(T, "fn", "2")
    with pytest.raises(NotFound):
        store.get(T, "fn", "2")
    with pytest.raises(NotFound):
        store.delete(T, "fn", "2")
    with pytest.raises(NotFound):
        store.delete(T, "fn", "9")
    assert [f.version for f in store.list_versions(T, "fn", None, 50)[0]] == [LATEST, "1", "3"]
    store.delete(T, "fn")
    for version in (LATEST, "1", "3"):
        with pytest.raises(NotFound):
            store.get(T, "fn", version)
    with pytest.raises(NotFound):
        store.list_versions(T, "fn", None, 50)
    assert store.list_latest(T, None, 50) == ([], None)
    with pytest.raises(NotFound):
        store.delete(T, "fn")
    with pytest.raises(NotFound):
        store.publish(T, "fn", None)
    # A re-created function starts afresh: no version of its predecessor survives.
    fresh = _fn(handler="new.handler")
    store.put_latest(fresh, create=True)
    assert [f.version for f in store.list_versions(T, "fn", None, 50)[0]] == [LATEST]
    assert store.publish(T, "fn", None) == fresh.model_copy(update={"version": "1"})


def test_usage_counts_functions_and_the_code_of_every_version(store: FunctionStore) -> None:
    assert store.usage(T) == (0, 0)
    store.put_latest(_fn("a", code_size=100), create=True)
    store.put_latest(_fn("b", code_size=10), create=True)
    assert store.usage(T) == (2, 110)
    store.publish(T, "a", None)  # a version holds its own copy of the code
    _changed(store, "a", code_size=1000)
    store.publish(T, "a", None)
    assert store.usage(T) == (2, 1000 + 100 + 1000 + 10)  # $LATEST, 1, 2 and b
    store.delete(T, "a", "1")
    assert store.usage(T) == (2, 1000 + 1000 + 10)
    store.put_latest(_fn("c", tenant=OTHER, code_size=5), create=True)
    store.delete(T, "b")
    assert store.usage(T) == (1, 2000)  # neither the deleted function nor another tenant's
    assert store.usage(OTHER) == (1, 5)


def test_counts_follow_functions_versions_and_code_through_every_write(
    store: FunctionStore,
) -> None:
    assert store.counts(T) == FunctionCounts(0, 0, 0)
    store.put_latest(_fn("a", code_size=100), create=True)
    store.put_latest(_fn("b", code_size=10), create=True)
    store.publish(T, "a", None)
    store.publish(T, "a", None)  # nothing new to publish: no second version
    _changed(store, "a", code_size=1000)  # $LATEST's code replaced: its size moves
    store.publish(T, "a", None)
    assert store.counts(T) == FunctionCounts(2, 2, 1000 + 100 + 1000 + 10)
    with pytest.raises(AlreadyExists):
        store.put_latest(_fn("b", code_size=7), create=True)  # refused: counts nothing
    store.delete(T, "a", "1")
    assert store.counts(T) == FunctionCounts(2, 1, 2010)
    store.delete(T, "a")  # with its remaining version
    assert store.counts(T) == FunctionCounts(1, 0, 10)
    assert store.counts(OTHER) == FunctionCounts(0, 0, 0)


def test_tenants_never_see_each_others_functions(store: FunctionStore) -> None:
    store.put_latest(_fn("shared"), create=True)
    store.publish(T, "shared", None)
    for call in (
        lambda: store.get(OTHER, "shared"),
        lambda: store.get(OTHER, "shared", "1"),
        lambda: store.publish(OTHER, "shared", None),
        lambda: store.list_versions(OTHER, "shared", None, 10),
        lambda: store.delete(OTHER, "shared", "1"),
        lambda: store.delete(OTHER, "shared"),
        lambda: store.put_latest(_fn("shared", tenant=OTHER), create=False),
    ):
        with pytest.raises(NotFound):
            call()
    assert store.list_latest(OTHER, None, 10) == ([], None)
    # The same name in another tenant is another function, with its own numbering.
    theirs = _fn("shared", tenant=OTHER, handler="theirs.handler")
    store.put_latest(theirs, create=True)
    assert store.publish(OTHER, "shared", None).handler == "theirs.handler"
    assert store.get(OTHER, "shared", "1").tenant == OTHER
    assert store.get(T, "shared", "1").handler == "app.handler"
    store.delete(OTHER, "shared")
    assert store.get(T, "shared").tenant == T


# -- concurrency ------------------------------------------------------------------------


def _run(threads: int, target: Callable[[int], None]) -> None:
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            target(i)
        except BaseException as exc:  # surfaced below, not lost in a thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors


def test_concurrent_publishes_never_share_a_number(store: FunctionStore) -> None:
    store.put_latest(_fn(), create=True)
    returned: list[FunctionVersion] = []
    lock = threading.Lock()

    def change_and_publish(i: int) -> None:
        for _ in range(3):
            _changed(store)
            published = store.publish(T, "fn", None)
            with lock:
                returned.append(published)

    _run(6, change_and_publish)
    stored = store.list_versions(T, "fn", None, 100)[0][1:]
    numbers = [int(v.version) for v in stored]
    assert numbers == list(range(1, len(stored) + 1))  # no gap, no duplicate
    # One number, one frozen $LATEST: no two publishes claimed a number for two revisions.
    assert len({v.revision_id for v in stored}) == len(stored)
    by_number = {v.version: v for v in stored}
    assert all(by_number[r.version] == r for r in returned)


def test_concurrent_writes_leave_the_counters_equal_to_what_is_stored(
    store: FunctionStore,
) -> None:
    store.put_latest(_fn("shared", code_size=1), create=True)

    def write(i: int) -> None:
        store.put_latest(_fn(f"own{i}", code_size=10 + i), create=True)
        for size in (100, 200 + i):
            _changed(store, "shared", code_size=size)  # revisions raced by every thread
            store.publish(T, "shared", None)
        if i % 2:
            store.delete(T, f"own{i}")

    _run(6, write)
    latest = store.list_latest(T, None, 100)[0]
    versions = store.list_versions(T, "shared", None, 100)[0][1:]
    assert store.counts(T) == FunctionCounts(
        len(latest),
        len(versions),
        sum(f.code_size for f in latest) + sum(v.code_size for v in versions),
    )


def test_concurrent_publishes_of_unchanged_code_make_one_version(store: FunctionStore) -> None:
    store.put_latest(_fn(), create=True)
    returned: list[str] = []
    _run(8, lambda i: returned.append(store.publish(T, "fn", None).version))
    assert returned == ["1"] * 8
    assert [f.version for f in store.list_versions(T, "fn", None, 50)[0]] == [LATEST, "1"]


# -- DynamoDB specifics ----------------------------------------------------------------


@pytest.fixture
def dynamo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DynamoFunctionStore]:
    _aws_env(monkeypatch)
    instance, cleanup = _dynamodb(tmp_path)
    yield instance
    cleanup()


def test_dynamodb_numbers_are_never_reused(dynamo: DynamoFunctionStore) -> None:
    # SQLite numbers max + 1, so it would hand out 2 again here; Lambda never does.
    dynamo.put_latest(_fn(), create=True)
    dynamo.publish(T, "fn", None)
    _changed(dynamo)
    dynamo.publish(T, "fn", None)
    dynamo.delete(T, "fn", "2")
    _changed(dynamo)
    assert dynamo.publish(T, "fn", None).version == "3"
    with pytest.raises(InvalidParameter):  # $LATEST holds the counter
        dynamo.delete(T, "fn", LATEST)


def test_dynamodb_a_function_too_big_for_one_transaction_is_fenced_then_purged(
    dynamo: DynamoFunctionStore,
) -> None:
    dynamo.put_latest(_fn(), create=True)
    for _ in range(99):
        _changed(dynamo)
        dynamo.publish(T, "fn", None)
    assert len(dynamo.list_versions(T, "fn", None, 200)[0]) == 100
    assert dynamo.counts(T) == FunctionCounts(1, 99, 100 * 123)
    dynamo.delete(T, "fn")
    client = boto3.client("dynamodb", region_name=REGION)
    # Nothing left but the tenant's counters, uncounted by the fencing transaction, and
    # its code package's (at zero references: the collector's to remove).
    left = client.scan(TableName=TABLE)["Items"]
    assert {item["pk"]["S"] for item in left} <= {f"UF#{T}", "CR"}
    assert dynamo.counts(T) == FunctionCounts(0, 0, 0)
    with pytest.raises(NotFound):
        dynamo.get(T, "fn")
    dynamo.put_latest(_fn(), create=True)
    assert dynamo.publish(T, "fn", None).version == "1"
