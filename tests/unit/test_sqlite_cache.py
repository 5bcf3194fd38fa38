"""The execution store's snapshot cache never serves a version older than the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.domain.errors import ConcurrentModification
from treadle.domain.models import Execution, ExecutionStatus
from treadle.domain.ports import Commit


def _execution() -> Execution:
    return Execution(
        arn="arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/n/i",
        tenant="123456789012",
        function_name="f",
        version="$LATEST",
        name="n",
        exec_id="i",
        status=ExecutionStatus.RUNNING,
        input_payload=None,
        input_hash="h",
        start_ms=0,
        execution_timeout_s=60,
        retention_days=1,
    )


def test_stale_writer_evicts_its_snapshot_and_next_load_is_fresh(tmp_path: Path) -> None:
    store = SqliteExecutionStore(Database(tmp_path / "t.db"))
    ex = _execution()
    store.create(Commit(execution=ex))
    first = store.load(ex.arn).execution
    second = store.load(ex.arn).execution
    first.generation = 1
    store.commit(Commit(execution=first))  # version 1 -> 2
    second.generation = 7
    with pytest.raises(ConcurrentModification):
        store.commit(Commit(execution=second))  # computed from version 1: refused
    fresh = store.load(ex.arn).execution
    assert fresh.version_seq == 2 and fresh.generation == 1


def test_a_cache_made_stale_by_another_writer_heals_after_one_refusal(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db")
    store = SqliteExecutionStore(db)
    other = SqliteExecutionStore(db)  # a second writer sharing the database
    ex = _execution()
    store.create(Commit(execution=ex.model_copy()))
    loaded = other.load(ex.arn).execution
    loaded.generation = 3
    other.commit(Commit(execution=loaded))
    # The first store's cache still holds version 1; a stale commit from it is refused
    # and drops the stale snapshot, so it converges on the database's version.
    snap = store.load(ex.arn).execution
    snap.generation = 9
    with pytest.raises(ConcurrentModification):
        store.commit(Commit(execution=snap))
    assert store.load(ex.arn).execution.generation == 3
