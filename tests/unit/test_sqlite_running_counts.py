"""The running-executions counter is kept by triggers, and counted once on upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from treadle.adapters.sqlite import db
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.domain.models import Execution, ExecutionStatus
from treadle.domain.ports import Commit, Timer, TimerKind

TENANT = "123456789012"


def _execution(name: str, tenant: str = TENANT) -> Execution:
    return Execution(
        arn=f"arn:aws:lambda:us-east-1:{tenant}:function:f:$LATEST/durable-execution/{name}/{name}",
        tenant=tenant,
        function_name="f",
        version="$LATEST",
        name=name,
        exec_id=name,
        status=ExecutionStatus.RUNNING,
        input_payload=None,
        input_hash="h",
        start_ms=0,
        execution_timeout_s=60,
        retention_days=1,
    )


def _invoking(ex: Execution) -> Commit:
    """A start as the engine writes it: its first invocation due."""
    return Commit(execution=ex, set_timers=[Timer(ex.arn, TimerKind.INVOKE, "", 0)])


def test_a_data_directory_from_before_the_counter_is_counted_once_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    store = SqliteExecutionStore(Database(path))
    for name in ("a", "b", "c"):
        store.create(_invoking(_execution(name)))
    store.create(_invoking(_execution("x", tenant="210987654321")))
    done = store.load(_execution("c").arn).execution
    done.status = ExecutionStatus.SUCCEEDED
    store.commit(Commit(execution=done))
    assert store.count_running(TENANT) == 2
    # What an older Treadle left: no counter table, no triggers.
    with sqlite3.connect(path) as conn:
        for trigger in ("running_insert", "running_update", "running_delete"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE running_counts")

    reopened = SqliteExecutionStore(Database(path))
    assert reopened.count_running(TENANT) == 2
    assert reopened.count_running("210987654321") == 1
    # And it keeps counting from there, through the triggers.
    reopened.create(_invoking(_execution("d")))
    assert reopened.count_running(TENANT) == 3
    # A second open does not count again.
    assert SqliteExecutionStore(Database(path)).count_running(TENANT) == 3


def test_usage_counters_of_an_older_data_directory_are_counted_once_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    store = SqliteExecutionStore(Database(path))
    for name in ("a", "b"):
        store.create(Commit(execution=_execution(name)))
    done = store.load(_execution("b").arn).execution
    done.status = ExecutionStatus.FAILED
    store.commit(Commit(execution=done))
    with sqlite3.connect(path) as conn:
        for (trigger,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'usage_%'"
        ).fetchall():
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE usage_counts")

    reopened = SqliteExecutionStore(Database(path))
    counts = reopened.usage(TENANT, 0)
    assert (counts.status("RUNNING"), counts.status("FAILED")) == (1, 1)
    reopened.create(Commit(execution=_execution("c")))
    again = SqliteExecutionStore(Database(path)).usage(TENANT, 0)
    assert (again.status("RUNNING"), again.status("FAILED")) == (2, 1)


def test_a_data_directory_that_counted_every_running_execution_is_recounted_on_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    store = SqliteExecutionStore(Database(path))
    store.create(_invoking(_execution("busy")))
    store.create(Commit(execution=_execution("parked")))  # RUNNING, no invocation due
    assert store.count_running(TENANT) == 1
    # What the previous Treadle left: no `invoking` column, triggers on status alone,
    # and a counter that counted the parked execution too.
    with sqlite3.connect(path) as conn:
        for (trigger,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            " AND (name LIKE 'running_%' OR name LIKE 'invoking_%')"
        ).fetchall():
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("ALTER TABLE executions DROP COLUMN invoking")
        conn.execute("UPDATE running_counts SET n = 2")

    reopened = SqliteExecutionStore(Database(path))
    assert reopened.count_running(TENANT) == 1
    # The new triggers count from there: the parked one's invocation comes due.
    parked = reopened.load(_execution("parked").arn).execution
    reopened.commit(
        Commit(execution=parked, set_timers=[Timer(parked.arn, TimerKind.INVOKE, "", 5)])
    )
    assert reopened.count_running(TENANT) == 2
    assert SqliteExecutionStore(Database(path)).count_running(TENANT) == 2


def test_an_upgrade_cut_short_leaves_the_database_as_it_was_and_the_next_open_completes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.db"
    store = SqliteExecutionStore(Database(path))
    store.create(_invoking(_execution("busy")))
    store.create(Commit(execution=_execution("parked")))
    with sqlite3.connect(path) as conn:  # the previous Treadle's database, as above
        for (trigger,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'running_%'"
        ).fetchall():
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("ALTER TABLE executions DROP COLUMN invoking")
        conn.execute("UPDATE running_counts SET n = 2")

    def cut(conn: sqlite3.Connection) -> None:  # the process dies in the last step
        raise KeyboardInterrupt

    monkeypatch.setattr(db, "add_code_refs", cut)
    with pytest.raises(KeyboardInterrupt):
        Database(path)
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(executions)")}
        assert "invoking" not in columns  # the column added earlier was rolled back
        assert conn.execute("SELECT n FROM running_counts").fetchall() == [(2,)]
    monkeypatch.undo()
    assert SqliteExecutionStore(Database(path)).count_running(TENANT) == 1
