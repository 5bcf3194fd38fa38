"""Events are indexed by operation only for the types `find_event` is asked for.

Every event in an (arn, op_id) index cost each one-step execution 5.4 of its 63 WAL
pages; the engine looks up one type by operation, a chained invoke's start. SQLite uses
a partial index only for a query that names its condition as a literal, which is the
subtle part these tests hold in place.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import INDEXED_EVENTS


def _indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    finally:
        conn.close()
    return {name for (name,) in rows}


def test_the_lookup_the_engine_makes_uses_the_partial_index(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db")
    with db.file.locked() as conn:
        for event_type in INDEXED_EVENTS:
            plan = conn.execute(
                "EXPLAIN QUERY PLAN SELECT body FROM events WHERE arn = ? AND op_id = ?"
                f" AND event_type = '{event_type}' ORDER BY event_id LIMIT 1",
                ("arn", "op"),
            ).fetchall()
            assert any("events_chained" in str(row[-1]) for row in plan), plan
        unindexed = conn.execute(
            "EXPLAIN QUERY PLAN SELECT body FROM events WHERE arn = ? AND op_id = ?"
            " AND event_type = ? ORDER BY event_id LIMIT 1",
            ("arn", "op", "StepStarted"),
        ).fetchall()
        assert not any("events_chained" in str(row[-1]) for row in unindexed)
    db.close()


def test_a_data_directory_with_the_full_index_loses_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    Database(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX events_chained")
    conn.execute("CREATE INDEX events_by_op ON events (arn, op_id)")  # as written before
    conn.commit()
    conn.close()
    Database(path).close()
    indexes = _indexes(path)
    assert "events_by_op" not in indexes and "events_chained" in indexes
