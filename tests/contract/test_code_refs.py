"""One contract for the code-package counts every FunctionStore keeps (`CodeRefs`,
`domain/code_refs.py`), on SQLite and DynamoDB (moto): a package is unreferenced only
once no $LATEST and no version of any function of any tenant names it; the collector's
stamp and its conditional release; and, per backend, counts rebuilt for data written
before counts existed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.contract.test_execution_store import _close, _start
from tests.contract.test_function_store import (
    OTHER,
    REGION,
    STORES,
    TABLE,
    T,
    _aws_env,
    _changed,
    _dynamodb,
    _fn,
)

from support.fakes import ManualClock
from treadle.adapters.aws import tables
from treadle.adapters.aws.dynamodb_executions import DynamoExecutionStore
from treadle.adapters.aws.dynamodb_functions import DynamoFunctionStore
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.domain.code_refs import CodeRef
from treadle.domain.models import ExecutionStatus
from treadle.domain.ports import ExecutionStore, FunctionStore

K1, K2, K3 = "a1" * 32, "b2" * 32, "c3" * 32


@pytest.fixture(params=sorted(STORES))
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FunctionStore]:
    _aws_env(monkeypatch)
    instance, cleanup = STORES[request.param](tmp_path)
    yield instance
    cleanup()


def _executions(store: FunctionStore) -> ExecutionStore:
    """An execution store over the same database or table as `store`."""
    if isinstance(store, SqliteFunctionStore):
        return SqliteExecutionStore(store._db)
    return DynamoExecutionStore(boto3.client("dynamodb", region_name=REGION), TABLE)


def free(store: FunctionStore) -> dict[str, CodeRef]:
    return {r.key: r for r in store.unreferenced_code(None, 1000)}


def test_a_package_is_unreferenced_once_neither_latest_nor_a_version_names_it(
    store: FunctionStore,
) -> None:
    store.put_latest(_fn(code_key=K1, code_size=10), create=True)
    store.publish(T, "fn", None)  # version 1 names K1 too
    _changed(store, code_key=K2, code_size=20)
    assert free(store) == {}  # K1 is version 1's
    store.delete(T, "fn", "1")
    assert free(store) == {K1: CodeRef(K1, 10, None)}
    _changed(store, code_key=K3, code_size=30)
    assert set(free(store)) == {K1, K2}
    _changed(store, code_key=K1, code_size=10)  # back to K1: referenced again
    assert set(free(store)) == {K2, K3}


def test_functions_of_two_tenants_share_one_count(store: FunctionStore) -> None:
    store.put_latest(_fn("a", code_key=K1), create=True)
    store.put_latest(_fn("b", tenant=OTHER, code_key=K1), create=True)
    store.publish(OTHER, "b", None)
    store.delete(T, "a")
    assert free(store) == {}
    store.delete(OTHER, "b")
    assert set(free(store)) == {K1}


def test_a_whole_function_delete_releases_each_of_its_packages(store: FunctionStore) -> None:
    store.put_latest(_fn(code_key=K1), create=True)
    for k in (K1, K2, K3):
        if k != K1:
            _changed(store, code_key=k)
        store.publish(T, "fn", None)
    store.put_latest(_fn("other", code_key=K3), create=True)
    store.delete(T, "fn")
    assert set(free(store)) == {K1, K2}  # K3 is still `other`'s


def test_the_stamp_is_set_once_and_cleared_by_a_new_reference(store: FunctionStore) -> None:
    store.put_latest(_fn(code_key=K1), create=True)
    store.mark_code_free(K1, 1_000)  # referenced: no stamp
    _changed(store, code_key=K2)
    assert free(store)[K1].free_since_ms is None
    store.mark_code_free(K1, 1_000)
    store.mark_code_free(K1, 5_000)  # once stamped, the first stamp holds
    assert free(store)[K1].free_since_ms == 1_000
    _changed(store, code_key=K1)
    _changed(store, code_key=K2)
    assert free(store)[K1].free_since_ms is None  # a new life: the grace starts again


def test_release_needs_the_package_free_since_the_cutoff_and_still_unreferenced(
    store: FunctionStore,
) -> None:
    store.put_latest(_fn(code_key=K1), create=True)
    assert store.release_code(K1, 10**15) is False  # referenced
    _changed(store, code_key=K2)
    assert store.release_code(K1, 10**15) is False  # never stamped
    store.mark_code_free(K1, 1_000)
    assert store.release_code(K1, 999) is False  # not free long enough
    assert store.release_code(K1, 1_000) is True
    assert free(store) == {}
    assert store.release_code(K1, 1_000) is False  # once
    _changed(store, code_key=K1)  # the same bytes uploaded again: counted afresh
    _changed(store, code_key=K2)
    assert free(store) == {K1: CodeRef(K1, 123, None)}


def test_a_package_an_execution_runs_stays_until_the_execution_is_deleted(
    store: FunctionStore,
) -> None:
    # Started on $LATEST with K1, which then moved on: only the execution needs K1 now
    # (to run, and once closed to be redriven, until its retention ends).
    store.put_latest(_fn(code_key=K1), create=True)
    pinned = _fn(code_key=K1).model_dump(mode="json")
    executions = _executions(store)
    ex = _start(executions, "e1", pinned_function=pinned)
    _changed(store, code_key=K2)
    assert free(store) == {}
    store.mark_code_free(K1, 1_000)  # refused while an execution runs it
    assert store.release_code(K1, 10**15) is False
    _close(executions, ex.arn, ExecutionStatus.SUCCEEDED)
    assert free(store) == {}  # closed, but redrivable
    executions.delete(ex.arn)
    assert free(store) == {K1: CodeRef(K1, 123, None)}
    store.mark_code_free(K1, 1_000)
    assert store.release_code(K1, 1_000) is True


def test_unreferenced_packages_page_in_key_order(store: FunctionStore) -> None:
    keys = sorted(f"{i:02x}" * 32 for i in range(7))
    store.put_latest(_fn(code_key=keys[0]), create=True)
    for k in [*keys[1:], K1]:
        _changed(store, code_key=k)
    pages, after = [], None
    while True:
        page = store.unreferenced_code(after, 3)
        if not page:
            break
        pages.append([r.key for r in page])
        after = page[-1].key
    assert [k for p in pages for k in p] == keys
    assert [len(p) for p in pages] == [3, 3, 1]


# -- data written before counts existed -------------------------------------------------


def test_sqlite_counts_a_database_written_before_counts_existed(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db")
    store = SqliteFunctionStore(db)
    store.put_latest(_fn(code_key=K1), create=True)
    store.publish(T, "fn", None)
    _changed(store, code_key=K2)
    _start(SqliteExecutionStore(db), "e1", pinned_function=_fn(code_key=K3).model_dump())
    db.close()
    conn = sqlite3.connect(tmp_path / "t.db")
    for trigger in ("code_ref_insert", "code_ref_update", "code_ref_delete"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE code_refs")
    conn.execute("DROP INDEX executions_code")
    conn.execute("ALTER TABLE executions DROP COLUMN code_key")
    conn.commit()
    conn.close()
    db = Database(tmp_path / "t.db")  # counted once on opening
    store = SqliteFunctionStore(db)
    assert free(store) == {}
    store.delete(T, "fn", "1")
    assert set(free(store)) == {K1}
    found = db.file.path  # the execution's package, from its record
    with sqlite3.connect(found) as conn:
        assert conn.execute("SELECT code_key FROM executions").fetchall() == [(K3,)]
    db.close()


@pytest.fixture
def dynamo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DynamoFunctionStore]:
    _aws_env(monkeypatch)
    instance, cleanup = _dynamodb(tmp_path)
    yield instance
    cleanup()


def _forget_counts(client: Any) -> None:
    """The table as a Treadle from before counts wrote it: no `cref`, no `CR` items."""
    for item in client.scan(TableName=TABLE)["Items"]:
        key = {"pk": item["pk"], "sk": item["sk"]}
        if item["pk"]["S"] in ("CR", "CRS"):
            client.delete_item(TableName=TABLE, Key=key)
        elif "cref" in item:
            client.update_item(TableName=TABLE, Key=key, UpdateExpression="REMOVE cref")


def test_dynamodb_backfills_counts_before_it_reports_any_package(
    dynamo: DynamoFunctionStore,
) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    dynamo.put_latest(_fn(code_key=K1), create=True)
    dynamo.publish(T, "fn", None)
    _changed(dynamo, code_key=K2)
    dynamo.put_latest(_fn("b", code_key=K3), create=True)
    _forget_counts(client)
    # An uncounted version is deleted before the backfill: nothing is taken off.
    dynamo.put_latest(_fn("c", code_key=K3), create=True)  # counted (new code)
    dynamo.delete(T, "b")  # uncounted: K3's count stays 1, for `c`
    assert free(dynamo) == {}  # the backfill ran first, then found nothing free
    state = client.get_item(TableName=TABLE, Key={"pk": {"S": "CRS"}, "sk": {"S": "STATE"}})
    assert state["Item"]["done"]["BOOL"] is True
    dynamo.delete(T, "fn", "1")  # counted by the backfill: K1 goes free
    assert set(free(dynamo)) == {K1}
    dynamo.delete(T, "c")
    assert set(free(dynamo)) == {K1, K3}


def test_dynamodb_a_delete_with_more_packages_than_one_transaction_takes_releases_all(
    dynamo: DynamoFunctionStore,
) -> None:
    keys = [f"{i:03x}".ljust(64, "0") for i in range(60)]
    dynamo.put_latest(_fn(code_key=keys[0]), create=True)
    for i, k in enumerate(keys):
        if i:
            _changed(dynamo, code_key=k)
        dynamo.publish(T, "fn", None)
    dynamo.delete(T, "fn")
    assert set(free(dynamo)) == set(keys)
    client = boto3.client("dynamodb", region_name=REGION)
    counts = [
        int(i["refs"]["N"])
        for i in client.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "CR"}},
        )["Items"]
    ]
    assert counts == [0] * 60  # never below zero: each taken off once


def test_dynamodb_a_table_from_before_the_code_index_gets_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _aws_env(monkeypatch)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        indexes, definitions = tables.global_secondary_indexes, tables.attribute_definitions
        with monkeypatch.context() as m:
            m.setattr(tables, "global_secondary_indexes", lambda: [
                i for i in indexes() if i["IndexName"] != tables.GSI_BY_CODE
            ])  # fmt: skip
            m.setattr(tables, "attribute_definitions", lambda: [
                d for d in definitions() if d["AttributeName"] != tables.CODE_KEY
            ])  # fmt: skip
            tables.create_tables(client, TABLE)
        tables.create_tables(client, TABLE)  # as `treadle dev --backend aws` does at start
        found = client.describe_table(TableName=TABLE)["Table"]["GlobalSecondaryIndexes"]
        assert tables.GSI_BY_CODE in {i["IndexName"] for i in found}


def test_dynamodb_backfill_indexes_executions_from_before_the_index(
    dynamo: DynamoFunctionStore,
) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    dynamo.put_latest(_fn(code_key=K1), create=True)
    executions = _executions(dynamo)
    ex = _start(executions, "e1", pinned_function=_fn(code_key=K1).model_dump(mode="json"))
    meta = {"pk": {"S": f"X#{ex.arn}"}, "sk": {"S": "META"}}
    client.update_item(TableName=TABLE, Key=meta, UpdateExpression="REMOVE code_key")
    _forget_counts(client)
    _changed(dynamo, code_key=K2)
    assert free(dynamo) == {}  # the backfill indexed the execution: K1 stays
    assert client.get_item(TableName=TABLE, Key=meta)["Item"]["code_key"] == {"S": K1}


def test_dynamodb_reports_nothing_until_a_second_pass_counted_what_old_writers_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process of the previous Treadle may still write uncounted items after the first
    pass: the second, an hour later, counts them before any package is reported."""
    _aws_env(monkeypatch)
    clock = ManualClock()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        tables.create_tables(client, TABLE)
        store = DynamoFunctionStore(client, TABLE, now_ms=clock.now_ms)
        store.put_latest(_fn(code_key=K1), create=True)
        _changed(store, code_key=K2)  # K1 free
        assert free(store) == {}  # first pass done: a second is due in an hour
        # An old writer publishes K2 as version 1 without counting it.
        latest = store.get(T, "fn")
        client.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": f"F#{T}#fn"},
                "sk": {"S": "V#000000000001"},
                "body": {"S": latest.model_copy(update={"version": "1"}).model_dump_json()},
            },
        )
        clock.advance(3_600_000 - 1)
        assert free(store) == {}
        clock.advance(1)
        _changed(store, code_key=K3)  # $LATEST leaves K2: only the old writer's item names it
        assert set(free(store)) == {K1}  # K2 counted by the second pass: kept


def test_dynamodb_backfill_resumes_across_calls_from_its_saved_place(
    dynamo: DynamoFunctionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from treadle.adapters.aws import code_refs

    client = boto3.client("dynamodb", region_name=REGION)
    for name, k in (("a", K1), ("b", K2), ("c", K3)):
        dynamo.put_latest(_fn(name, code_key=k), create=True)
    _forget_counts(client)
    monkeypatch.setattr(code_refs, "_SCAN_PAGE", 1)
    monkeypatch.setattr(code_refs, "_SCAN_PAGES_PER_CALL", 2)  # a bounded run each call
    calls = 0
    state_key = {"pk": {"S": "CRS"}, "sk": {"S": "STATE"}}

    def done() -> bool:
        state = client.get_item(TableName=TABLE, Key=state_key).get("Item", {})
        return bool(state.get("done", {}).get("BOOL"))

    while not done():
        calls += 1
        assert calls < 200, "the backfill never completes"
        assert free(dynamo) == {}
    assert calls > 2, calls  # it took several bounded calls
    assert client.get_item(TableName=TABLE, Key=state_key)["Item"]["done"] == {"BOOL": True}
    dynamo.delete(T, "b")
    dynamo.delete(T, "c")
    assert set(free(dynamo)) == {K2, K3}  # each counted exactly once: now at zero
