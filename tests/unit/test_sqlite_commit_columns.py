"""A SQLite commit writes only the execution columns that move: a checkpoint that
changes neither status nor lease names neither in its UPDATE, so no index on them is
rewritten and no `UPDATE OF` trigger fires (SQLite does both for every column in the
SET list, changed or not), while a commit that moves the status still does."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from support.engine_harness import Harness, step

# Fires exactly when an UPDATE names one of the columns the counters' triggers and the
# partial indexes depend on: what the store must leave out when they do not move.
SPY = """
CREATE TEMP TABLE named (arn TEXT);
CREATE TEMP TRIGGER spy AFTER UPDATE OF status, invocation_active, invoking
ON main.executions BEGIN INSERT INTO named VALUES (NEW.arn); END;
"""


def _named(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM temp.named").fetchone()[0])


def test_a_checkpoint_that_moves_no_status_names_no_indexed_column_and_a_close_does(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    writer = h.db._file._conn  # the store's writer connection, where temp objects live
    writer.executescript(SPY)
    seen: dict[str, int] = {}

    def script(env: dict[str, Any], hh: Harness) -> dict[str, Any]:
        before = _named(writer)
        first = hh.checkpoint(env, [step("s", "START")])
        hh.checkpoint(env, [step("s", "SUCCEED", Payload="2")], token=first.CheckpointToken)
        seen["checkpoints"] = _named(writer) - before
        seen["before_close"] = _named(writer)
        return {"Status": "SUCCEEDED", "Result": "1"}

    h.runtime.scripts.append(script)
    arn = h.engine.start(h.fn, "e", None)[0].arn
    h.pump()
    assert seen["checkpoints"] == 0
    assert _named(writer) > seen["before_close"]  # the close moved the status: named
    assert h.store.get(arn).status.value == "SUCCEEDED"
    with h.db.read() as conn:
        running = conn.execute("SELECT coalesce(sum(n), 0) FROM running_counts").fetchone()[0]
        succeeded = conn.execute(
            "SELECT n FROM usage_counts WHERE counter = 'status:SUCCEEDED'"
        ).fetchone()[0]
    assert running == 0 and succeeded == 1
