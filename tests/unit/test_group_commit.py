"""Group commit (`SqliteFile.grouped`): writes queued by threads waiting for the writer
lock are run by its holder, each in a savepoint, and committed together; each caller
gets its own result or its own error, a write that fails takes only itself back, and a
group that fails whole (SQLite ended the transaction) writes nothing and says so to all."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from treadle.adapters.sqlite.connection import SqliteFile, _Queued
from treadle.domain.errors import StorageFull

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"


def _rows(f: SqliteFile) -> dict[str, int]:
    with f.locked() as conn:
        return dict(conn.execute("SELECT k, v FROM t").fetchall())


def test_concurrent_writes_are_committed_in_groups_each_with_its_own_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = SqliteFile(tmp_path / "g.db", schema=SCHEMA)
    sizes: list[int] = []
    run_group = f._run_group

    def counted(group: list[_Queued]) -> None:
        sizes.append(len(group))
        run_group(group)

    monkeypatch.setattr(f, "_run_group", counted)
    results: dict[int, int] = {}
    gate = threading.Barrier(16)

    def writer(i: int) -> None:
        gate.wait()
        for j in range(25):
            n = i * 100 + j

            def work(conn: sqlite3.Connection, n: int = n) -> int:
                conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"k{n}", n))
                return n * 2

            results[n] = f.grouped(work)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_rows(f)) == 16 * 25 and all(results[n] == n * 2 for n in results)
    assert sum(sizes) == 16 * 25
    assert max(sizes) > 1  # waiting writers were taken along by the lock's holder


def test_a_failing_write_takes_back_only_itself(tmp_path: Path) -> None:
    f = SqliteFile(tmp_path / "g.db", schema=SCHEMA)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k, v) VALUES ('half', 1)")
        raise KeyError("refused")

    f._queue.append(_queued(lambda conn: conn.execute("INSERT INTO t VALUES ('a', 1)")))
    with pytest.raises(KeyError):
        f.grouped(half_then_fail)  # runs the queued write too, in the same group
    f.grouped(lambda conn: conn.execute("INSERT INTO t VALUES ('b', 2)"))
    assert _rows(f) == {"a": 1, "b": 2}


def test_a_group_that_fails_whole_writes_nothing_and_tells_every_writer(
    tmp_path: Path,
) -> None:
    f = SqliteFile(tmp_path / "g.db", schema=SCHEMA)
    other = _queued(lambda conn: conn.execute("INSERT INTO t VALUES ('a', 1)"))
    f._queue.append(other)

    def disk_full(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES ('b', 2)")
        conn.execute("ROLLBACK")  # what SQLite does itself on SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(StorageFull):
        f.grouped(disk_full)
    assert other.done and isinstance(other.error, sqlite3.OperationalError)
    assert _rows(f) == {}
    f.grouped(lambda conn: conn.execute("INSERT INTO t VALUES ('c', 3)"))  # usable again
    assert _rows(f) == {"c": 3}


def test_a_write_made_inside_a_grouped_write_is_part_of_it(tmp_path: Path) -> None:
    f = SqliteFile(tmp_path / "g.db", schema=SCHEMA)

    def outer(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t VALUES ('outer', 1)")
        return f.grouped(lambda c: c.execute("INSERT INTO t VALUES ('inner', 2)").rowcount)

    assert f.grouped(outer) == 1
    assert _rows(f) == {"outer": 1, "inner": 2}


def _queued(work: Callable[[sqlite3.Connection], object]) -> _Queued:
    """A write another thread queued before the lock's next holder takes the queue."""
    return _Queued(work)


def test_a_write_alone_in_its_group_runs_without_a_savepoint_and_fails_whole(
    tmp_path: Path,
) -> None:
    f = SqliteFile(tmp_path / "g.db", schema=SCHEMA)
    statements: list[str] = []
    with f.locked() as conn:
        conn.set_trace_callback(statements.append)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (k, v) VALUES ('half', 1)")
        raise KeyError("refused")

    assert f.grouped(lambda conn: conn.execute("INSERT INTO t VALUES ('a', 1)").rowcount) == 1
    assert statements == ["BEGIN IMMEDIATE", "INSERT INTO t VALUES ('a', 1)", "COMMIT"]
    with pytest.raises(KeyError):
        f.grouped(half_then_fail)
    assert not any(s.startswith(("SAVEPOINT", "RELEASE")) for s in statements)
    f.grouped(lambda conn: conn.execute("INSERT INTO t VALUES ('b', 2)"))
    assert _rows(f) == {"a": 1, "b": 2}  # the failed write's half is not there
