"""SQLite adapter of the LastUsedStore port: one row per resource in `treadle.db`."""

from __future__ import annotations

from treadle.adapters.sqlite.db import Database
from treadle.domain.usage import LAST_USED_GRAIN_MS


class SqliteLastUsed:
    def __init__(self, db: Database) -> None:
        self._db = db

    def touch(self, tenant: str, kind: str, resource: str, now_ms: int) -> bool:
        with self._db.write() as conn:
            cur = conn.execute(
                "INSERT INTO last_used (tenant, kind, resource, at_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, kind, resource) DO UPDATE SET at_ms = excluded.at_ms"
                " WHERE last_used.at_ms < excluded.at_ms - ?",
                (tenant, kind, resource, now_ms, LAST_USED_GRAIN_MS),
            )
            return cur.rowcount == 1

    def last_used(self, tenant: str, kind: str) -> dict[str, int]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT resource, at_ms FROM last_used WHERE tenant = ? AND kind = ?",
                (tenant, kind),
            ).fetchall()
        return {r: int(at) for r, at in rows}

    def forget(self, tenant: str, kind: str, resource: str) -> None:
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM last_used WHERE tenant = ? AND kind = ? AND resource = ?",
                (tenant, kind, resource),
            )
