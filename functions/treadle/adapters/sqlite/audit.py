"""SQLite side of the audit log.

A record lives in the same file as the change it describes (`treadle.db` for
functions, `tenants.db` for tenants and keys, ...), written by `insert_audit` inside
that change's transaction. Each of those files therefore carries an `audit` table
(`AUDIT_SCHEMA`); `SqliteAuditLog` reads them all and merges them by id, which is
time-ordered, so a reader sees one log newest first. Refused calls, which change
nothing, are appended to the first file (`treadle.db`).
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from treadle.domain.audit import (
    DAY_MS,
    DEFAULT_RETENTION_DAYS,
    AuditPage,
    AuditQuery,
    AuditRecord,
)

AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id TEXT PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    outcome TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant, id);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time_ms);
"""


def insert_audit(conn: sqlite3.Connection, record: AuditRecord | None) -> None:
    """Within the caller's transaction: the record commits with the change or not at all."""
    if record is None:
        return
    conn.execute(
        "INSERT INTO audit (id, time_ms, tenant, action, resource, outcome, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            record.id,
            record.time_ms,
            record.tenant,
            record.action,
            record.resource,
            record.outcome,
            record.model_dump_json(),
        ),
    )


class AuditFile(Protocol):
    """A database file holding an `audit` table (a `SqliteFile`)."""

    def locked(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


def _where(query: AuditQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("tenant", query.tenant),
        ("action", query.action),
        ("outcome", query.outcome),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if query.resource_prefix:
        # substr, not LIKE: a prefix holding % or _ means itself.
        clauses.append("substr(resource, 1, ?) = ?")
        args += [len(query.resource_prefix), query.resource_prefix]
    if query.since_ms is not None:
        clauses.append("time_ms >= ?")
        args.append(query.since_ms)
    if query.until_ms is not None:
        clauses.append("time_ms < ?")
        args.append(query.until_ms)
    if query.before_id is not None:
        clauses.append("id < ?")
        args.append(query.before_id)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class SqliteAuditLog:
    """The audit tables of several files, read as one log."""

    def __init__(
        self,
        files: Sequence[AuditFile],
        *,
        now_ms: Callable[[], int],
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        if not files:
            raise ValueError("an audit log needs at least one file")
        self._files = list(files)
        self._now_ms = now_ms
        self.retention_ms = retention_days * DAY_MS

    def append(self, record: AuditRecord) -> None:
        with self._files[0].transaction() as conn:
            insert_audit(conn, record)

    def _read(self, file: AuditFile, query: AuditQuery) -> list[AuditRecord]:
        where, args = _where(query)
        with file.locked() as conn:
            rows = conn.execute(
                f"SELECT body FROM audit{where} ORDER BY id DESC LIMIT ?",
                [*args, query.limit + 1],
            ).fetchall()
        return [AuditRecord.model_validate_json(r[0]) for r in rows]

    def query(self, query: AuditQuery) -> AuditPage:
        # Each file gives at most limit + 1 newest-first; the merge keeps the newest.
        # Past the retention is gone, whether or not the purge has run yet.
        floor = self._now_ms() - self.retention_ms
        if query.since_ms is None or query.since_ms < floor:
            query = query.model_copy(update={"since_ms": floor})
        runs = [self._read(f, query) for f in self._files]
        merged: Iterator[AuditRecord] = heapq.merge(*runs, key=lambda r: r.id, reverse=True)
        records = [r for _, r in zip(range(query.limit + 1), merged, strict=False)]
        more = len(records) > query.limit
        records = records[: query.limit]
        return AuditPage(records=records, next_cursor=records[-1].id if more else None)

    def purge(self, before_ms: int) -> int:
        removed = 0
        for file in self._files:
            with file.transaction() as conn:
                cur = conn.execute("DELETE FROM audit WHERE time_ms < ?", (before_ms,))
                removed += cur.rowcount
        return removed

    def purge_expired(self) -> int:
        """The embedded scheduler's retention sweep."""
        return self.purge(self._now_ms() - self.retention_ms)
