"""SQLite adapter of the ExecutionStore port."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from treadle.adapters.snapshot_cache import SnapshotCache
from treadle.adapters.sqlite.audit import insert_audit
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.notifications import insert_status_event
from treadle.domain.audit import AuditRecord
from treadle.domain.concurrency import invoke_timer_change
from treadle.domain.errors import AlreadyExists, ConcurrentModification, InvalidParameter, NotFound
from treadle.domain.models import Event, Execution, Operation
from treadle.domain.partition import Partition
from treadle.domain.ports import (
    Commit,
    ExecutionQuery,
    Snapshot,
    StoredOperation,
    Timer,
    TimerKind,
)
from treadle.domain.usage import ExecutionCounts

# The event types `find_event` looks up by operation, the only ones the partial index
# `events_chained` (db.py) holds. Named here and in its WHERE clause: keep both in step.
INDEXED_EVENTS = frozenset({"ChainedInvokeStarted"})


@dataclass(frozen=True)
class _Rows:
    operations: list[tuple[str, str, int, int, str]]
    events: list[tuple[str, int, str | None, str, str]]


def _row_execution(record: str) -> Execution:
    return Execution.model_validate_json(record)


class SqliteExecutionStore:
    """Executions in SQLite, with a write-through cache of recent snapshots.

    The embedded platform is the only writer of its data directory (the server holds a
    lock on it), so a snapshot cached after a successful commit is exactly what the
    database holds; the cache spares re-reading and re-parsing every operation of an
    execution on each checkpoint.
    """

    def __init__(
        self, db: Database, cache_size: int = 4096, partition: Partition | None = None
    ) -> None:
        self._db = db
        # Several processes on the file: the timers and leases this one drives. The
        # filter is SQL (`treadle_owner`), so a backlog of another process's due rows
        # never fills this one's read window.
        self._partition = partition or Partition()
        part = self._partition
        self._mine = "" if part.whole else f" AND treadle_owner(arn, {part.count}) = {part.index}"
        self._cache: SnapshotCache[Snapshot] = SnapshotCache(cache_size)

    # -- writes ----------------------------------------------------------------

    def create(self, commit: Commit) -> None:
        if not self.create_batch([commit])[0]:
            raise AlreadyExists(f"Execution {commit.execution.name} already exists.")

    def create_batch(self, commits: Sequence[Commit]) -> list[bool]:
        """All in one transaction; an execution whose name exists is skipped (False)."""
        prepared = [(c, self._rows(c)) for c in commits]
        created = self._db.grouped(
            lambda conn: [self._insert(conn, commit, rows) for commit, rows in prepared]
        )
        for commit, was_created in zip(commits, created, strict=True):
            if was_created:
                ex = commit.execution
                ex.version_seq = 1
                ops = {s.op.Id: s for s in commit.operations}
                # Only if nothing newer is there: the first invocation may already have
                # changed the execution between this commit and here.
                self._cache.remember(Snapshot(execution=ex.model_copy(), operations=ops))
        return created

    def create_linked(self, commit: Commit, source: Commit) -> None:
        """One transaction: the source's update first (its fence), then the insert."""
        try:
            source_rows, rows = self._rows(source), self._rows(commit)
            with self._db.write() as conn:
                self._update(conn, source, source_rows)
                if not self._insert(conn, commit, rows):
                    raise AlreadyExists(f"Execution {commit.execution.name} already exists.")
        except AlreadyExists:
            self._cache.forget(source.execution.arn)
            raise
        self._advance(source)
        ex = commit.execution
        ex.version_seq = 1
        ops = {s.op.Id: s for s in commit.operations}
        self._cache.remember(Snapshot(execution=ex.model_copy(), operations=ops))

    def commit(self, commit: Commit) -> None:
        rows = self._rows(commit)
        self._db.grouped(lambda conn: self._update(conn, commit, rows))
        self._advance(commit)

    def _update(self, conn: sqlite3.Connection, commit: Commit, rows: _Rows) -> None:
        ex = commit.execution
        new_version = ex.version_seq + 1
        record = ex.model_copy(update={"version_seq": new_version}).model_dump_json()
        # The running count's column (`domain/concurrency.py`), with the row's own write.
        sets, clears = invoke_timer_change(commit)
        # Only the columns that move are named: SQLite rewrites every index and fires
        # every `UPDATE OF` trigger whose column is in the SET list, changed or not, and
        # a statement with triggers needs a statement journal. A checkpoint that changes
        # neither status nor lease then writes the row and no index page (13 -> 6 WAL
        # pages per W1 step, measured).
        assignments = ["version_seq = ?", "record = ?"]
        params: list[object] = [new_version, record]
        if commit.before is None or commit.before[0] is not ex.status:
            assignments.append("status = ?")
            params.append(ex.status.value)
        if commit.before is None or commit.before[1] != ex.invocation_active:
            assignments.append("invocation_active = ?")
            params.append(int(ex.invocation_active))
        if sets or clears:
            assignments.append("invoking = ?")
            params.append(1 if sets else 0)
        cur = conn.execute(
            f"UPDATE executions SET {', '.join(assignments)} WHERE arn = ? AND version_seq = ?",
            (*params, ex.arn, ex.version_seq),
        )
        if cur.rowcount != 1:
            # What this writer saw is stale: the next load must come from the database.
            self._cache.forget(ex.arn)
            raise ConcurrentModification(f"Execution {ex.arn} changed concurrently.")
        self._write_children(conn, commit, rows)

    def _advance(self, commit: Commit) -> None:
        commit.execution.version_seq += 1
        self._cache.advance(
            commit, lambda ops: Snapshot(execution=commit.execution.model_copy(), operations=ops)
        )

    def _insert(self, conn: sqlite3.Connection, commit: Commit, rows: _Rows) -> bool:
        """Insert a new execution; False (nothing written) if its name exists."""
        ex = commit.execution
        record = ex.model_copy(update={"version_seq": 1}).model_dump_json()
        cur = conn.execute(
            "INSERT OR IGNORE INTO executions (arn, tenant, function_name, name, version,"
            " status, start_ms, invocation_active, version_seq, record, invoking, code_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
            (
                ex.arn,
                ex.tenant,
                ex.function_name,
                ex.name,
                ex.version,
                ex.status.value,
                ex.start_ms,
                int(ex.invocation_active),
                record,
                invoke_timer_change(commit)[0],
                ex.code_key,
            ),
        )
        if cur.rowcount != 1:
            return False
        self._write_children(conn, commit, rows)
        return True

    @staticmethod
    def _rows(commit: Commit) -> _Rows:
        """Serialise a commit's rows before taking the writer's lock, to hold it briefly."""
        arn = commit.execution.arn
        return _Rows(
            operations=[
                (arn, s.op.Id, s.create_seq, s.change_seq, s.op.model_dump_json(exclude_none=True))
                for s in commit.operations
            ],
            events=[
                (arn, e.EventId, e.Id, e.EventType, e.model_dump_json(exclude_none=True))
                for e in commit.events
            ],
        )

    @staticmethod
    def _write_children(conn: sqlite3.Connection, commit: Commit, rows: _Rows) -> None:
        # Statements with nothing to write are skipped: each one costs the writer a GIL
        # release and re-acquisition while it holds the database's write lock.
        arn = commit.execution.arn
        if rows.operations:
            conn.executemany(
                "INSERT OR REPLACE INTO operations (arn, op_id, create_seq, change_seq, body)"
                " VALUES (?, ?, ?, ?, ?)",
                rows.operations,
            )
        if rows.events:
            conn.executemany(
                "INSERT INTO events (arn, event_id, op_id, event_type, body)"
                " VALUES (?, ?, ?, ?, ?)",
                rows.events,
            )
        if commit.clear_all_timers:
            conn.execute("DELETE FROM timers WHERE arn = ?", (arn,))
        elif commit.clear_timers:
            conn.executemany(
                "DELETE FROM timers WHERE arn = ? AND kind = ? AND op_id = ?",
                [(arn, kind.value, op_id) for kind, op_id in commit.clear_timers],
            )
        if commit.set_timers:
            conn.executemany(
                "INSERT OR REPLACE INTO timers (arn, kind, op_id, due_ms) VALUES (?, ?, ?, ?)",
                [(t.arn, t.kind.value, t.op_id, t.due_ms) for t in commit.set_timers],
            )
        if commit.new_callbacks:
            conn.executemany(
                "INSERT INTO callbacks (callback_id, arn, op_id, heartbeat_s) VALUES (?, ?, ?, ?)",
                [(cid, arn, op_id, hb) for cid, op_id, hb in commit.new_callbacks],
            )
        if commit.client_token is not None:
            conn.execute(
                "INSERT OR REPLACE INTO client_tokens (arn, token, response) VALUES (?, ?, ?)",
                (arn, *commit.client_token),
            )
        if commit.status_event is not None:
            insert_status_event(conn, commit.status_event)
        insert_audit(conn, commit.audit)

    def delete(self, arn: str, *, audit: AuditRecord | None = None) -> None:
        self._cache.forget(arn)
        with self._db.write() as conn:
            insert_audit(conn, audit)
            for table in ("operations", "events", "timers", "callbacks", "client_tokens"):
                conn.execute(f"DELETE FROM {table} WHERE arn = ?", (arn,))
            conn.execute("DELETE FROM executions WHERE arn = ?", (arn,))

    # -- reads -----------------------------------------------------------------

    def find_by_name(self, tenant: str, function_name: str, name: str) -> Execution | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT record FROM executions WHERE tenant = ? AND function_name = ? AND name = ?",
                (tenant, function_name, name),
            ).fetchone()
        return _row_execution(row[0]) if row else None

    def get(self, arn: str) -> Execution:
        with self._db.read() as conn:
            row = conn.execute("SELECT record FROM executions WHERE arn = ?", (arn,)).fetchone()
        if row is None:
            raise NotFound(f"Durable execution {arn} not found.")
        return _row_execution(row[0])

    def load(self, arn: str) -> Snapshot:
        # Another process's execution is read from the file: its owner changes it all the
        # time, and a change computed on an old snapshot that writes nothing (an error,
        # a no-op) has no version check to catch it. This process's own are changed
        # elsewhere only by requests it did not take (a callback, a stop), and its next
        # change of one writes: refused on its version, then loaded again.
        cached = self._cache.get(arn) if self._partition.owns(arn) else None
        if cached is not None:
            return Snapshot(
                execution=cached.execution.model_copy(), operations=dict(cached.operations)
            )
        with self._db.read() as conn:
            row = conn.execute("SELECT record FROM executions WHERE arn = ?", (arn,)).fetchone()
            if row is None:
                raise NotFound(f"Durable execution {arn} not found.")
            rows = conn.execute(
                "SELECT create_seq, change_seq, body FROM operations WHERE arn = ?", (arn,)
            ).fetchall()
        ops = {}
        for create_seq, change_seq, body in rows:
            op = Operation.model_validate_json(body)
            ops[op.Id] = StoredOperation(op=op, create_seq=create_seq, change_seq=change_seq)
        snap = Snapshot(execution=_row_execution(row[0]), operations=ops)
        self._cache.remember(Snapshot(execution=snap.execution.model_copy(), operations=dict(ops)))
        return snap

    def events(self, arn: str, *, after_id: int, limit: int, reverse: bool = False) -> list[Event]:
        with self._db.read() as conn:
            if reverse:
                bound = after_id if after_id > 0 else 2**62
                rows = conn.execute(
                    "SELECT body FROM events WHERE arn = ? AND event_id < ?"
                    " ORDER BY event_id DESC LIMIT ?",
                    (arn, bound, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT body FROM events WHERE arn = ? AND event_id > ?"
                    " ORDER BY event_id LIMIT ?",
                    (arn, after_id, limit),
                ).fetchall()
        return [Event.model_validate_json(r[0]) for r in rows]

    def operations_page(self, arn: str, *, after_seq: int, limit: int) -> list[StoredOperation]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT create_seq, change_seq, body FROM operations"
                " WHERE arn = ? AND create_seq > ? ORDER BY create_seq LIMIT ?",
                (arn, after_seq, limit),
            ).fetchall()
        return [
            StoredOperation(op=Operation.model_validate_json(b), create_seq=c, change_seq=ch)
            for c, ch, b in rows
        ]

    def find_event(self, arn: str, op_id: str, event_type: str) -> Event | None:
        # A partial index covers only the types in INDEXED_EVENTS, and SQLite uses it
        # only for a query that names the type as a literal, not as a parameter.
        params: tuple[str, ...] = (arn, op_id)
        if event_type in INDEXED_EVENTS:
            type_clause = f"event_type = '{event_type}'"
        else:  # not asked by the engine: the execution's events, read through
            type_clause, params = "event_type = ?", (arn, op_id, event_type)
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT body FROM events WHERE arn = ? AND op_id = ? AND {type_clause}"
                " ORDER BY event_id LIMIT 1",
                params,
            ).fetchone()
        return Event.model_validate_json(row[0]) if row else None

    def callback_owner(self, callback_id: str) -> tuple[str, str, int] | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT arn, op_id, heartbeat_s FROM callbacks WHERE callback_id = ?",
                (callback_id,),
            ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def client_token_response(self, arn: str, client_token: str) -> str | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT response FROM client_tokens WHERE arn = ? AND token = ?",
                (arn, client_token),
            ).fetchone()
        return row[0] if row else None

    def due_timers(self, now_ms: int, limit: int) -> list[Timer]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT arn, kind, op_id, due_ms FROM timers WHERE due_ms <= ?{self._mine}"
                " ORDER BY due_ms LIMIT ?",
                (now_ms, limit),
            ).fetchall()
        return [Timer(a, TimerKind(k), o, d) for a, k, o, d in rows]

    def next_due_ms(self) -> int | None:
        with self._db.read() as conn:
            if self._partition.whole:
                row = conn.execute("SELECT MIN(due_ms) FROM timers").fetchone()
            else:  # in due order: stops at the first of this process's rows
                row = conn.execute(
                    f"SELECT due_ms FROM timers WHERE 1{self._mine} ORDER BY due_ms LIMIT 1"
                ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def active_invocations(self) -> list[str]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT arn FROM executions WHERE invocation_active = 1{self._mine}"
            ).fetchall()
        return [r[0] for r in rows]

    def count_running(self, tenant: str) -> int:
        """The tenant's executions holding or awaiting an invocation (`domain/concurrency`):
        a counter the triggers keep."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT n FROM running_counts WHERE tenant = ?", (tenant,)
            ).fetchone()
        return int(row[0]) if row else 0

    def usage(self, tenant: str, now_ms: int) -> ExecutionCounts:
        """The tenant's counters: one read of its `usage_counts` rows (pruned to a few)."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT counter, n FROM usage_counts WHERE tenant = ?", (tenant,)
            ).fetchall()
        by_status: dict[str, int] = {}
        starts: dict[int, int] = {}
        in_flight = 0
        for counter, n in rows:
            kind, _, rest = counter.partition(":")
            if kind == "status":
                by_status[rest] = int(n)
            elif kind == "starts":
                starts[int(rest)] = int(n)
            elif kind == "inflight":
                in_flight = int(n)
        return ExecutionCounts(by_status, in_flight, starts)

    def list_executions(
        self, tenant: str, function_name: str, query: ExecutionQuery
    ) -> tuple[list[Execution], str | None]:
        clauses = ["tenant = ?", "function_name = ?"]
        args: list[object] = [tenant, function_name]
        if query.statuses:
            clauses.append(f"status IN ({','.join('?' * len(query.statuses))})")
            args.extend(s.value for s in query.statuses)
        if query.name:
            clauses.append("name = ?")
            args.append(query.name)
        if query.version:
            clauses.append("version = ?")
            args.append(query.version)
        if query.started_after_ms is not None:
            clauses.append("start_ms >= ?")
            args.append(query.started_after_ms)
        if query.started_before_ms is not None:
            clauses.append("start_ms <= ?")
            args.append(query.started_before_ms)
        order = "DESC" if query.reverse else "ASC"
        if query.marker:
            start_ms, rowid = _decode_marker(query.marker)
            op = "<" if query.reverse else ">"
            clauses.append(f"(start_ms, rowid) {op} (?, ?)")
            args.extend([start_ms, rowid])
        sql = (
            "SELECT record, start_ms, rowid FROM executions WHERE "
            + " AND ".join(clauses)
            + f" ORDER BY start_ms {order}, rowid {order} LIMIT ?"
        )
        args.append(query.limit + 1)
        with self._db.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        marker = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            marker = _encode_marker(rows[-1][1], rows[-1][2])
        return [_row_execution(r[0]) for r in rows], marker


def _encode_marker(start_ms: int, rowid: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([start_ms, rowid]).encode()).decode()


def _decode_marker(marker: str) -> tuple[int, int]:
    try:
        start_ms, rowid = json.loads(base64.urlsafe_b64decode(marker.encode()))
        return int(start_ms), int(rowid)
    except (ValueError, TypeError):
        raise InvalidParameter(f"Invalid marker {marker!r}.") from None
