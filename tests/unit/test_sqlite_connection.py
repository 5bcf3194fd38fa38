"""`SqliteFile`: the one opening and transaction helper every SQLite adapter uses."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from treadle.adapters.sqlite.connection import SqliteFile

_SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"


def test_opens_in_wal_creating_the_directory(tmp_path: Path) -> None:
    db = SqliteFile(tmp_path / "a" / "b.db", schema=_SCHEMA)
    with db.locked() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    db.close()


def test_a_failed_transaction_leaves_nothing_and_the_file_usable(tmp_path: Path) -> None:
    db = SqliteFile(tmp_path / "t.db", schema=_SCHEMA)
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('a', 1)")
        raise RuntimeError("refused")
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('b', 2)")
    with db.locked() as conn:
        assert conn.execute("SELECT k FROM t").fetchall() == [("b",)]
    db.close()


def test_concurrent_read_modify_writes_do_not_lose_updates(tmp_path: Path) -> None:
    # Two handles on one file stand for two processes: BEGIN IMMEDIATE serializes them.
    first = SqliteFile(tmp_path / "t.db", schema=_SCHEMA)
    second = SqliteFile(tmp_path / "t.db", schema=_SCHEMA)
    with first.transaction() as conn:
        conn.execute("INSERT INTO t VALUES ('n', 0)")

    def bump(db: SqliteFile) -> None:
        for _ in range(50):
            with db.transaction() as conn:
                (n,) = conn.execute("SELECT v FROM t WHERE k = 'n'").fetchone()
                conn.execute("UPDATE t SET v = ? WHERE k = 'n'", (n + 1,))

    threads = [threading.Thread(target=bump, args=(db,)) for db in (first, second, first)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with second.locked() as conn:
        assert conn.execute("SELECT v FROM t").fetchone() == (150,)
    first.close()
    second.close()
