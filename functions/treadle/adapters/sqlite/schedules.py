"""SQLite adapter of the ScheduleStore port: one row per schedule in `schedules.db`.

The record is JSON; `version` and `due_ms` are columns because the compare-and-swap
and the schedulers' query need them. Each write is one transaction (`connection.py`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from treadle.adapters.sqlite.connection import SqliteFile
from treadle.domain.errors import AlreadyExists, ConcurrentModification, InvalidParameter, NotFound
from treadle.domain.schedules import Schedule

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    due_ms INTEGER,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (due_ms) WHERE due_ms IS NOT NULL;
"""


def _not_found(name: str) -> NotFound:
    return NotFound(f"Schedule {name} not found.")


class SqliteScheduleStore:
    def __init__(self, path: Path) -> None:
        self._file = SqliteFile(path, schema=SCHEMA)

    def close(self) -> None:
        self._file.close()

    def create(self, schedule: Schedule) -> None:
        stored = schedule.model_copy(update={"version": 1})
        with self._file.transaction() as conn:
            try:
                conn.execute(
                    "INSERT INTO schedules (tenant, name, version, due_ms, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (stored.tenant, stored.name, 1, stored.due_ms, stored.model_dump_json()),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"Schedule {schedule.name} already exists.") from None

    def get(self, tenant: str, name: str) -> Schedule:
        with self._file.locked() as conn:
            row = conn.execute(
                "SELECT body FROM schedules WHERE tenant = ? AND name = ?", (tenant, name)
            ).fetchone()
        if row is None:
            raise _not_found(name)
        return Schedule.model_validate_json(row[0])

    def list_page(
        self, tenant: str, limit: int, marker: str | None
    ) -> tuple[list[Schedule], str | None]:
        if limit < 1:
            raise InvalidParameter("limit must be at least 1.")
        with self._file.locked() as conn:
            rows = conn.execute(
                "SELECT body FROM schedules WHERE tenant = ? AND name > ? ORDER BY name LIMIT ?",
                (tenant, marker or "", limit + 1),
            ).fetchall()
        found = [Schedule.model_validate_json(row[0]) for row in rows]
        more = len(found) > limit
        found = found[:limit]
        return found, (found[-1].name if more else None)

    def replace(self, schedule: Schedule) -> Schedule:
        stored = schedule.model_copy(update={"version": schedule.version + 1})
        with self._file.transaction() as conn:
            row = conn.execute(
                "SELECT version FROM schedules WHERE tenant = ? AND name = ?",
                (schedule.tenant, schedule.name),
            ).fetchone()
            if row is None:
                raise _not_found(schedule.name)
            if row[0] != schedule.version:
                raise ConcurrentModification(f"Schedule {schedule.name} changed; read it again.")
            conn.execute(
                "UPDATE schedules SET version = ?, due_ms = ?, body = ?"
                " WHERE tenant = ? AND name = ?",
                (
                    stored.version,
                    stored.due_ms,
                    stored.model_dump_json(),
                    stored.tenant,
                    stored.name,
                ),
            )
        return stored

    def delete(self, tenant: str, name: str) -> None:
        with self._file.transaction() as conn:
            deleted = conn.execute(
                "DELETE FROM schedules WHERE tenant = ? AND name = ?", (tenant, name)
            ).rowcount
        if not deleted:
            raise _not_found(name)

    def due(self, now_ms: int, limit: int) -> list[Schedule]:
        with self._file.locked() as conn:
            rows = conn.execute(
                "SELECT body FROM schedules WHERE due_ms IS NOT NULL AND due_ms <= ?"
                " ORDER BY due_ms LIMIT ?",
                (now_ms, limit),
            ).fetchall()
        return [Schedule.model_validate_json(row[0]) for row in rows]

    def next_due_ms(self) -> int | None:
        with self._file.locked() as conn:
            row = conn.execute(
                "SELECT MIN(due_ms) FROM schedules WHERE due_ms IS NOT NULL"
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])
