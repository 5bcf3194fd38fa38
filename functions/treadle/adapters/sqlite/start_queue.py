"""The start queue on SQLite: the QUEUED rows of `executions`, found through the
partial index `executions_queued` (only queued rows are in it, so a tenant's head is
one index seek whatever else it stores) and counted by the `status:QUEUED` usage
counter the triggers keep (`db.py`)."""

from __future__ import annotations

from treadle.adapters.sqlite.db import Database

_QUEUED = "status:QUEUED"


class SqliteStartQueue:
    def __init__(self, db: Database) -> None:
        self._db = db

    def tenants_with_queued(self) -> list[str]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT tenant FROM usage_counts WHERE counter = ? AND n > 0 ORDER BY tenant",
                (_QUEUED,),
            ).fetchall()
        return [r[0] for r in rows]

    def count_queued(self, tenant: str) -> int:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT n FROM usage_counts WHERE tenant = ? AND counter = ?", (tenant, _QUEUED)
            ).fetchone()
        return max(0, int(row[0])) if row else 0

    def oldest_queued(self, tenant: str, limit: int) -> list[str]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT arn FROM executions WHERE tenant = ? AND status = 'QUEUED'"
                " ORDER BY start_ms, rowid LIMIT ?",
                (tenant, limit),
            ).fetchall()
        return [r[0] for r in rows]
