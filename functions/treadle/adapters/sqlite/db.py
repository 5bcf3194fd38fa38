"""The database of executions and function versions (`treadle.db`).

`SqliteExecutionStore` and `SqliteFunctionStore` share this file; tenants, Git refs and
logs keep their own (see `tenants.py`, `refs.py`, `logs.py`). Opening, durability and
writes are those of every SQLite adapter (`connection.py`): one connection under one
lock, each write a `BEGIN IMMEDIATE` transaction. Reads here are hot (every checkpoint
loads its execution), so they use a connection per thread instead, which WAL lets run
beside the writer and each other instead of queueing on the writer's lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

from treadle.adapters.sqlite.audit import AUDIT_SCHEMA
from treadle.adapters.sqlite.code_refs import add_code_refs
from treadle.adapters.sqlite.connection import SqliteFile, connect

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    function_name TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    invocation_active INTEGER NOT NULL,
    -- 1 while the execution has an INVOKE timer: it holds or awaits an invocation
    -- (`domain/concurrency.py`). Written by the commit that sets or clears the timer, in
    -- the statement that writes the row anyway (a trigger on `timers` would rewrite the
    -- whole row, its input payload included, a second time).
    invoking INTEGER NOT NULL DEFAULT 0,
    version_seq INTEGER NOT NULL,
    -- The code package the execution runs, pinned at its start (`code_refs.py`).
    code_key TEXT,
    record TEXT NOT NULL,
    UNIQUE (tenant, function_name, name)
);
CREATE INDEX IF NOT EXISTS executions_by_function
    ON executions (tenant, function_name, start_ms);
CREATE INDEX IF NOT EXISTS executions_active ON executions (invocation_active)
    WHERE invocation_active = 1;
CREATE INDEX IF NOT EXISTS executions_running ON executions (tenant)
    WHERE status = 'RUNNING';
-- The start queue (adapters/sqlite/start_queue.py): a tenant's QUEUED executions in
-- FIFO order, and nothing else, so another tenant's backlog costs nothing to read past.
CREATE INDEX IF NOT EXISTS executions_queued ON executions (tenant, start_ms)
    WHERE status = 'QUEUED';
-- Live executions by the version they are pinned to: what garbage collection checks in
-- a version's or function's delete transaction (adapters/sqlite/functions.py).
CREATE INDEX IF NOT EXISTS executions_live ON executions (tenant, function_name, version)
    WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'STOPPED');
CREATE TABLE IF NOT EXISTS operations (
    arn TEXT NOT NULL,
    op_id TEXT NOT NULL,
    create_seq INTEGER NOT NULL,
    change_seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (arn, op_id)
);
CREATE INDEX IF NOT EXISTS operations_by_create ON operations (arn, create_seq);
CREATE TABLE IF NOT EXISTS events (
    arn TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    op_id TEXT,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (arn, event_id)
);

CREATE TABLE IF NOT EXISTS timers (
    arn TEXT NOT NULL,
    kind TEXT NOT NULL,
    op_id TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    PRIMARY KEY (arn, kind, op_id)
);
CREATE INDEX IF NOT EXISTS timers_by_due ON timers (due_ms);
CREATE TABLE IF NOT EXISTS callbacks (
    callback_id TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    op_id TEXT NOT NULL,
    heartbeat_s INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS callbacks_by_arn ON callbacks (arn);
CREATE TABLE IF NOT EXISTS client_tokens (
    arn TEXT NOT NULL,
    token TEXT NOT NULL,
    response TEXT NOT NULL,
    PRIMARY KEY (arn, token)
);
-- A tenant's running executions for its quota: RUNNING and holding or awaiting an
-- invocation (`invoking`, see `domain/concurrency.py`), kept by triggers in the
-- transaction that changes them: counting the rows at every start costs O(running).
CREATE TABLE IF NOT EXISTS running_counts (
    tenant TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS running_insert AFTER INSERT ON executions
WHEN NEW.status = 'RUNNING' AND NEW.invoking = 1
BEGIN
    INSERT INTO running_counts (tenant, n) VALUES (NEW.tenant, 1)
    ON CONFLICT (tenant) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS running_update AFTER UPDATE OF status, invoking ON executions
WHEN (OLD.status = 'RUNNING' AND OLD.invoking = 1) != (NEW.status = 'RUNNING' AND NEW.invoking = 1)
BEGIN
    INSERT INTO running_counts (tenant, n)
    VALUES (NEW.tenant, CASE WHEN NEW.status = 'RUNNING' AND NEW.invoking = 1 THEN 1 ELSE -1 END)
    ON CONFLICT (tenant) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER IF NOT EXISTS running_delete AFTER DELETE ON executions
WHEN OLD.status = 'RUNNING' AND OLD.invoking = 1
BEGIN
    UPDATE running_counts SET n = n - 1 WHERE tenant = OLD.tenant;
END;
-- The tenant's usage counters (docs/operating.md), moved by triggers in the transaction
-- that changes the execution, so reading usage is a handful of rows whatever the count:
-- `status:<STATUS>` per status, `inflight` (holding an invocation now) and
-- `starts:<minute:012d>` (starts per minute; older buckets are pruned at each start).
CREATE TABLE IF NOT EXISTS usage_counts (
    tenant TEXT NOT NULL,
    counter TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (tenant, counter)
);
CREATE TRIGGER IF NOT EXISTS usage_insert AFTER INSERT ON executions
BEGIN
    INSERT INTO usage_counts (tenant, counter, n) VALUES
        (NEW.tenant, 'status:' || NEW.status, 1),
        (NEW.tenant, 'inflight', NEW.invocation_active),
        (NEW.tenant, printf('starts:%012d', NEW.start_ms / 60000), 1)
    ON CONFLICT (tenant, counter) DO UPDATE SET n = n + excluded.n;
    DELETE FROM usage_counts WHERE tenant = NEW.tenant
        AND counter >= 'starts:' AND counter < printf('starts:%012d', NEW.start_ms / 60000 - 1);
END;
CREATE TRIGGER IF NOT EXISTS usage_update AFTER UPDATE OF status, invocation_active
ON executions
WHEN OLD.status != NEW.status OR OLD.invocation_active != NEW.invocation_active
BEGIN
    INSERT INTO usage_counts (tenant, counter, n) VALUES
        (NEW.tenant, 'status:' || OLD.status, -1),
        (NEW.tenant, 'status:' || NEW.status, 1),
        (NEW.tenant, 'inflight', NEW.invocation_active - OLD.invocation_active)
    ON CONFLICT (tenant, counter) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER IF NOT EXISTS usage_delete AFTER DELETE ON executions
BEGIN
    UPDATE usage_counts SET n = n - 1
        WHERE tenant = OLD.tenant AND counter = 'status:' || OLD.status;
    UPDATE usage_counts SET n = n - OLD.invocation_active
        WHERE tenant = OLD.tenant AND counter = 'inflight';
END;
-- Status-change events (docs/notifications.md): the stream, in commit order (`seq`, as
-- the single writer commits), and the outbox of those not yet relayed to webhooks.
CREATE TABLE IF NOT EXISTS status_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    relayed INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS status_events_by_tenant ON status_events (tenant, seq);
CREATE INDEX IF NOT EXISTS status_events_outbox ON status_events (seq) WHERE relayed = 0;
CREATE TABLE IF NOT EXISTS webhooks (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    tenant TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    key TEXT NOT NULL,
    next_attempt_ms INTEGER,
    attempts INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, webhook_id, key)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_ms)
    WHERE next_attempt_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS functions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    version_num INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, name, version)
);
-- Moves with every write of a function version, in its transaction: a process that
-- caches versions (`SqliteFunctionStore`) sees another process's writes by
-- reading one row.
CREATE TABLE IF NOT EXISTS generations (
    name TEXT PRIMARY KEY,
    n INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS functions_generation_insert AFTER INSERT ON functions
BEGIN
    INSERT INTO generations (name, n) VALUES ('functions', 1)
    ON CONFLICT (name) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS functions_generation_update AFTER UPDATE ON functions
BEGIN
    INSERT INTO generations (name, n) VALUES ('functions', 1)
    ON CONFLICT (name) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS functions_generation_delete AFTER DELETE ON functions
BEGIN
    INSERT INTO generations (name, n) VALUES ('functions', 1)
    ON CONFLICT (name) DO UPDATE SET n = n + 1;
END;
CREATE TABLE IF NOT EXISTS aliases (
    tenant TEXT NOT NULL,
    function_name TEXT NOT NULL,
    name TEXT NOT NULL,
    function_version TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, function_name, name)
);
-- Functions, published versions and their code bytes, in the same counters.
CREATE TRIGGER IF NOT EXISTS usage_function_insert AFTER INSERT ON functions
BEGIN
    INSERT INTO usage_counts (tenant, counter, n) VALUES
        (NEW.tenant, CASE WHEN NEW.version = '$LATEST' THEN 'functions' ELSE 'versions' END, 1),
        (NEW.tenant, 'code_bytes', COALESCE(json_extract(NEW.body, '$.code_size'), 0))
    ON CONFLICT (tenant, counter) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER IF NOT EXISTS usage_function_update AFTER UPDATE OF body ON functions
BEGIN
    INSERT INTO usage_counts (tenant, counter, n) VALUES
        (NEW.tenant, 'code_bytes', COALESCE(json_extract(NEW.body, '$.code_size'), 0)
            - COALESCE(json_extract(OLD.body, '$.code_size'), 0))
    ON CONFLICT (tenant, counter) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER IF NOT EXISTS usage_function_delete AFTER DELETE ON functions
BEGIN
    UPDATE usage_counts SET n = n - 1 WHERE tenant = OLD.tenant
        AND counter = CASE WHEN OLD.version = '$LATEST' THEN 'functions' ELSE 'versions' END;
    UPDATE usage_counts SET n = n - COALESCE(json_extract(OLD.body, '$.code_size'), 0)
        WHERE tenant = OLD.tenant AND counter = 'code_bytes';
END;
-- When each function version, repository and facet was last used, to the minute
-- (`LastUsedStore`).
CREATE TABLE IF NOT EXISTS last_used (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, resource)
);
"""


class Database:
    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        with self._file.locked() as conn:
            # One transaction: a crash while an older database is brought up to this
            # schema leaves it as it was (a table created but not yet counted would
            # pass for counted at the next start).
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = not _has_table(conn, "executions") or _add_invoking(conn)
                counted = current and _has_table(conn, "running_counts")
                usage_counted = _has_table(conn, "usage_counts")
                for statement in statements(SCHEMA + AUDIT_SCHEMA):
                    conn.execute(statement)
                _migrate(conn, counted)
                if not usage_counted:
                    _count_usage(conn)
                add_code_refs(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._file.path)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        yield conn

    @property
    def file(self) -> SqliteFile:
        """The file behind the writer (the audit log reads its `audit` table)."""
        return self._file

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One transaction: everything inside commits together or not at all."""
        return self._file.transaction()

    def grouped(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` atomically, maybe in one commit with other threads' (`SqliteFile.grouped`)."""
        return self._file.grouped(work)

    def close(self) -> None:
        self._file.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()


def statements(script: str) -> Iterator[str]:
    """The statements of `script` one by one (a trigger's body holds `;`s): unlike
    `executescript`, which commits first, they can run inside a transaction."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _add_invoking(conn: sqlite3.Connection) -> bool:
    """Whether the running counter counts by `invoking` already; if not (a data
    directory from when every RUNNING execution counted), add the column and drop the
    old triggers, which the schema then creates anew, and the caller recounts."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(executions)")}
    if "invoking" in columns:
        return True
    conn.execute("ALTER TABLE executions ADD COLUMN invoking INTEGER NOT NULL DEFAULT 0")
    for trigger in ("running_insert", "running_update", "running_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    return False


def _migrate(conn: sqlite3.Connection, counted: bool) -> None:
    """Bring a data directory written by an older Treadle up to this schema."""
    if not counted:
        # The triggers count from now on; what was running before is counted once.
        conn.execute(
            "UPDATE executions SET invoking = EXISTS (SELECT 1 FROM timers"
            " WHERE timers.arn = executions.arn AND timers.kind = 'INVOKE')"
        )
        conn.execute("DELETE FROM running_counts")
        conn.execute(
            "INSERT INTO running_counts (tenant, n) SELECT tenant, COUNT(*) FROM executions"
            " WHERE status = 'RUNNING' AND invoking = 1 GROUP BY tenant"
        )
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if "op_id" not in columns:
        conn.execute("ALTER TABLE events ADD COLUMN op_id TEXT")
        conn.execute("ALTER TABLE events ADD COLUMN event_type TEXT NOT NULL DEFAULT ''")
    # Events by operation, for `find_event`: only the types it is asked for are indexed
    # (`executions.INDEXED_EVENTS`). Every event in the index was 5.4 of the 63 WAL pages
    # a one-step execution wrote (`python -m benchmarks.engine --pages`).
    conn.execute("DROP INDEX IF EXISTS events_by_op")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS events_chained ON events (arn, op_id, event_id)"
        " WHERE event_type = 'ChainedInvokeStarted'"
    )


def _count_usage(conn: sqlite3.Connection) -> None:
    """Usage counters of a data directory written before they existed: counted once."""
    conn.execute("DELETE FROM usage_counts")
    conn.execute(
        "INSERT INTO usage_counts (tenant, counter, n) SELECT tenant, 'status:' || status,"
        " COUNT(*) FROM executions GROUP BY tenant, status"
    )
    conn.execute(
        "INSERT INTO usage_counts (tenant, counter, n) SELECT tenant, 'inflight',"
        " SUM(invocation_active) FROM executions GROUP BY tenant"
    )
    conn.execute(
        "INSERT INTO usage_counts (tenant, counter, n)"
        " SELECT tenant, CASE WHEN version = '$LATEST' THEN 'functions' ELSE 'versions' END,"
        " COUNT(*) FROM functions GROUP BY 1, 2"
    )
    conn.execute(
        "INSERT INTO usage_counts (tenant, counter, n) SELECT tenant, 'code_bytes',"
        " COALESCE(SUM(json_extract(body, '$.code_size')), 0) FROM functions GROUP BY tenant"
    )
