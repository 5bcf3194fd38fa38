"""SQLite side of `domain/code_refs.py`: how many rows of `functions` name each code
package, kept by triggers, so every write of a version (whatever the statement) moves
the count in its own transaction; and the package each execution runs.

    code_refs(code_key PK, refs, size, free_since_ms)   free_since_ms: the collector's
                                                         stamp; cleared on a new ref
    executions.code_key                                 written once, at insert

An execution keeps the code it started on (`Execution.pinned_function`), even once no
version names it (started on $LATEST, since changed): until the execution is deleted
(its retention over: a closed one may still be redriven) its package is in use.
"""

from __future__ import annotations

import sqlite3

from treadle.domain.code_refs import CodeRef

_KEY = "json_extract({row}.body, '$.code_key')"
_SIZE = "COALESCE(json_extract({row}.body, '$.code_size'), 0)"
_ADD_NEW = (
    f"INSERT INTO code_refs (code_key, refs, size) VALUES ({_KEY}, 1, {_SIZE})"
    " ON CONFLICT (code_key) DO UPDATE SET refs = refs + 1, free_since_ms = NULL;"
).format(row="NEW")
_DROP_OLD = f"UPDATE code_refs SET refs = refs - 1 WHERE code_key = {_KEY};".format(row="OLD")

# One statement per item, run in the transaction that opens the database.
STATEMENTS = (
    "CREATE TABLE code_refs (code_key TEXT PRIMARY KEY, refs INTEGER NOT NULL,"
    " size INTEGER NOT NULL, free_since_ms INTEGER)",
    "CREATE INDEX code_refs_free ON code_refs (code_key) WHERE refs <= 0",
    f"CREATE TRIGGER code_ref_insert AFTER INSERT ON functions BEGIN {_ADD_NEW} END",
    "CREATE TRIGGER code_ref_update AFTER UPDATE OF body ON functions"
    f" WHEN {_KEY.format(row='OLD')} IS NOT {_KEY.format(row='NEW')}"
    f" BEGIN {_ADD_NEW} {_DROP_OLD} END",
    f"CREATE TRIGGER code_ref_delete AFTER DELETE ON functions BEGIN {_DROP_OLD} END",
    # What existed before the table did, counted once.
    f"INSERT INTO code_refs (code_key, refs, size) SELECT {_KEY.format(row='functions')},"
    f" COUNT(*), MAX({_SIZE.format(row='functions')}) FROM functions GROUP BY 1",
)


# Executions written before the column existed: their package, from their record.
EXECUTION_STATEMENTS = (
    "ALTER TABLE executions ADD COLUMN code_key TEXT",
    "UPDATE executions SET code_key = json_extract(record, '$.pinned_function.code_key')",
)
_UNPINNED = "NOT EXISTS (SELECT 1 FROM executions WHERE executions.code_key = code_refs.code_key)"


def add_code_refs(conn: sqlite3.Connection) -> None:
    """Bring a database up to the counts, unless done: in the caller's transaction (a
    crash between the table and its backfill would leave every existing version
    uncounted, its code free to collect)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(executions)")}
    if "code_key" not in columns:
        for statement in EXECUTION_STATEMENTS:
            conn.execute(statement)
    conn.execute(
        "CREATE INDEX IF NOT EXISTS executions_code ON executions (code_key)"
        " WHERE code_key IS NOT NULL"
    )
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'code_refs'"
    ).fetchone()
    if found is None:
        for statement in STATEMENTS:
            conn.execute(statement)


def unreferenced(conn: sqlite3.Connection, after: str | None, limit: int) -> list[CodeRef]:
    rows = conn.execute(
        "SELECT code_key, size, free_since_ms FROM code_refs WHERE refs <= 0 AND code_key > ?"
        f" AND {_UNPINNED} ORDER BY code_key LIMIT ?",
        (after or "", limit),
    ).fetchall()
    return [
        CodeRef(str(k), int(size), None if since is None else int(since)) for k, size, since in rows
    ]


def mark_free(conn: sqlite3.Connection, key: str, now_ms: int) -> None:
    conn.execute(
        "UPDATE code_refs SET free_since_ms = ? WHERE code_key = ? AND refs <= 0"
        f" AND free_since_ms IS NULL AND {_UNPINNED}",
        (now_ms, key),
    )


def release(conn: sqlite3.Connection, key: str, cutoff_ms: int) -> bool:
    cur = conn.execute(
        "DELETE FROM code_refs WHERE code_key = ? AND refs <= 0 AND free_since_ms <= ?"
        f" AND {_UNPINNED}",
        (key, cutoff_ms),
    )
    return cur.rowcount == 1
