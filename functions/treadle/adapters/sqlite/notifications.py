"""SQLite adapters of the notification ports: the status-event stream and webhooks.

Events are inserted by `SqliteExecutionStore` in the commit's own transaction
(`insert_status_event`); the one writer connection commits transactions one at a time,
so the AUTOINCREMENT `seq` is exactly commit order, and a cursor is a `seq`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from treadle.adapters.sqlite.db import Database
from treadle.domain.errors import AlreadyExists, ConcurrentModification, NotFound
from treadle.domain.notifications import (
    Delivery,
    StatusEvent,
    Webhook,
    decode_cursor,
    encode_cursor,
)


def insert_status_event(conn: sqlite3.Connection, event: StatusEvent) -> None:
    conn.execute(
        "INSERT INTO status_events (id, tenant, time_ms, body) VALUES (?, ?, ?, ?)",
        (event.id, event.tenant, event.time_ms, event.model_dump_json()),
    )


class SqliteStatusEvents:
    def __init__(self, db: Database) -> None:
        self._db = db

    def read(
        self, tenant: str, cursor: str | None, limit: int, now_ms: int
    ) -> tuple[list[StatusEvent], str]:
        after = 0
        if cursor is not None:
            position = decode_cursor(cursor)
            if not position.isdigit():
                decode_cursor("")  # the same refusal as any foreign cursor
            after = int(position)
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT seq, body FROM status_events WHERE tenant = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (tenant, after, limit),
            ).fetchall()
        if rows:
            after = rows[-1][0]
        events = [StatusEvent.model_validate_json(body) for _, body in rows]
        return events, encode_cursor(str(after))

    def tail(self, tenant: str, now_ms: int) -> str:
        with self._db.read() as conn:
            (last,) = conn.execute(
                "SELECT coalesce(max(seq), 0) FROM status_events WHERE tenant = ?", (tenant,)
            ).fetchone()
        return encode_cursor(str(last))

    def unrelayed(self, limit: int) -> list[StatusEvent]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT body FROM status_events WHERE relayed = 0 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [StatusEvent.model_validate_json(r[0]) for r in rows]

    def mark_relayed(self, events: Sequence[StatusEvent]) -> None:
        if not events:
            return
        ids = [e.id for e in events]
        # No index on ids (one more per event, on every engine commit): an id is found in
        # the outbox's partial index. The relay marks the events `unrelayed` gave it, the
        # outbox's oldest, and no event can be committed ahead of them, so they are
        # among its len(events) oldest still there: one look at those few rows. A scan
        # per id instead costs the whole outbox, and a burst of starts makes it tens of
        # thousands long (1.3 ms per event at 10,000, under the write lock the engine's
        # commits wait for). Events that are not the oldest take the scan.
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE status_events SET relayed = 1 WHERE seq IN ("
                " SELECT seq FROM status_events WHERE relayed = 0 ORDER BY seq LIMIT ?"
                ") AND id IN (SELECT value FROM json_each(?))",
                (len(ids), json.dumps(ids)),
            )
            if cur.rowcount < len(ids):
                conn.executemany(
                    "UPDATE status_events SET relayed = 1 WHERE relayed = 0 AND id = ?",
                    [(i,) for i in ids],
                )

    def purge(self, before_ms: int) -> int:
        with self._db.write() as conn:
            cur = conn.execute(
                "DELETE FROM status_events WHERE time_ms < ? AND relayed = 1", (before_ms,)
            )
            conn.execute(
                "DELETE FROM webhook_deliveries WHERE next_attempt_ms IS NULL AND key < ?",
                (f"{before_ms:013d}",),
            )
        return cur.rowcount


class SqliteWebhookStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create_webhook(self, hook: Webhook) -> None:
        with self._db.write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO webhooks (tenant, id, created_ms, body) VALUES (?, ?, ?, ?)",
                (hook.tenant, hook.id, hook.created_ms, hook.model_dump_json()),
            )
        if cur.rowcount != 1:
            raise AlreadyExists(f"Webhook {hook.id} already exists.")

    def get_webhook(self, tenant: str, webhook_id: str) -> Webhook:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT body FROM webhooks WHERE tenant = ? AND id = ?", (tenant, webhook_id)
            ).fetchone()
        if row is None:
            raise NotFound(f"Webhook {webhook_id} not found.")
        return Webhook.model_validate_json(row[0])

    def list_webhooks(self, tenant: str) -> list[Webhook]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT body FROM webhooks WHERE tenant = ? ORDER BY created_ms, id", (tenant,)
            ).fetchall()
        return [Webhook.model_validate_json(r[0]) for r in rows]

    def delete_webhook(self, tenant: str, webhook_id: str) -> None:
        with self._db.write() as conn:
            cur = conn.execute(
                "DELETE FROM webhooks WHERE tenant = ? AND id = ?", (tenant, webhook_id)
            )
            if cur.rowcount != 1:
                raise NotFound(f"Webhook {webhook_id} not found.")
            conn.execute(
                "DELETE FROM webhook_deliveries WHERE tenant = ? AND webhook_id = ?",
                (tenant, webhook_id),
            )

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        with self._db.write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO webhook_deliveries"
                " (tenant, webhook_id, key, next_attempt_ms, attempts, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [_row(d) for d in deliveries],
            )

    def due_deliveries(self, now_ms: int, limit: int) -> list[Delivery]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT body FROM webhook_deliveries WHERE next_attempt_ms IS NOT NULL"
                " AND next_attempt_ms <= ? ORDER BY next_attempt_ms LIMIT ?",
                (now_ms, limit),
            ).fetchall()
        return [Delivery.model_validate_json(r[0]) for r in rows]

    def save_delivery(self, before: Delivery, after: Delivery) -> None:
        tenant, hook, key, next_ms, attempts, body = _row(after)
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_ms = ?, attempts = ?, body = ?"
                " WHERE tenant = ? AND webhook_id = ? AND key = ? AND attempts = ?",
                (next_ms, attempts, body, tenant, hook, key, len(before.attempts)),
            )
        if cur.rowcount != 1:
            raise ConcurrentModification(f"Delivery {key} of {hook} changed concurrently.")

    def deliveries(self, tenant: str, webhook_id: str, limit: int) -> list[Delivery]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT body FROM webhook_deliveries WHERE tenant = ? AND webhook_id = ?"
                " ORDER BY key DESC LIMIT ?",
                (tenant, webhook_id, limit),
            ).fetchall()
        return [Delivery.model_validate_json(r[0]) for r in rows]


def _row(d: Delivery) -> tuple[str, str, str, int | None, int, str]:
    return (d.tenant, d.webhook_id, d.key, d.next_attempt_ms, len(d.attempts), d.model_dump_json())
