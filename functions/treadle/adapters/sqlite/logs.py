"""SQLite adapter of the LogStore port (its own database file: logs are not state)."""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from treadle.adapters.sqlite.connection import SqliteFile
from treadle.domain.errors import InvalidParameter
from treadle.domain.logfilter import compile_pattern
from treadle.domain.logs import (
    DescribePage,
    FilterResult,
    check_describe_limit,
    check_filter_limit,
)

_SCAN_BATCH = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    log_group TEXT NOT NULL,
    log_stream TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    ingestion_ms INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_events_by_group
    ON log_events (tenant, log_group, timestamp_ms, seq);
"""


class SqliteLogStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteFile(path, schema=_SCHEMA)

    def append(
        self, tenant: str, log_group: str, log_stream: str, events: Sequence[tuple[int, str]]
    ) -> None:
        now = int(time.time() * 1000)
        rows = [(tenant, log_group, log_stream, ts, now, msg) for ts, msg in events]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO log_events (tenant, log_group, log_stream, timestamp_ms,"
                " ingestion_ms, message) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

        # Every invocation appends its lines: concurrent ones share one commit.
        self._db.grouped(insert)

    def log_group_exists(self, tenant: str, log_group: str) -> bool:
        with self._db.locked() as conn:
            row = conn.execute(
                "SELECT 1 FROM log_events WHERE tenant = ? AND log_group = ? LIMIT 1",
                (tenant, log_group),
            ).fetchone()
        return row is not None

    def describe_groups(
        self, tenant: str, *, prefix: str | None, limit: int, next_token: str | None
    ) -> DescribePage:
        check_describe_limit(limit)
        after = _decode(next_token) if next_token else ""
        with self._db.locked() as conn:
            rows = conn.execute(
                "SELECT log_group, MIN(ingestion_ms), SUM(LENGTH(CAST(message AS BLOB)))"
                " FROM log_events WHERE tenant = ? AND log_group > ?"
                " AND substr(log_group, 1, ?) = ?"
                " GROUP BY log_group ORDER BY log_group LIMIT ?",
                (tenant, after, len(prefix or ""), prefix or "", limit + 1),
            ).fetchall()
        items = [
            {"logGroupName": g, "creationTime": created, "storedBytes": stored}
            for g, created, stored in rows[:limit]
        ]
        token = _encode(rows[limit - 1][0]) if len(rows) > limit else None
        return DescribePage(items, token)

    def describe_streams(
        self,
        tenant: str,
        log_group: str,
        *,
        prefix: str | None,
        by_last_event: bool,
        descending: bool,
        limit: int,
        next_token: str | None,
    ) -> DescribePage:
        check_describe_limit(limit)
        # An offset: streams are few per group next to their events, and the order by last
        # event changes as streams grow, which a key cursor would not survive either.
        offset = _offset(next_token) if next_token else 0
        order = "MAX(timestamp_ms)" if by_last_event else "log_stream"
        direction = "DESC" if descending else "ASC"
        with self._db.locked() as conn:
            rows = conn.execute(
                "SELECT log_stream, MIN(ingestion_ms), MIN(timestamp_ms), MAX(timestamp_ms),"
                " MAX(ingestion_ms), SUM(LENGTH(CAST(message AS BLOB))) FROM log_events"
                " WHERE tenant = ? AND log_group = ? AND substr(log_stream, 1, ?) = ?"
                f" GROUP BY log_stream ORDER BY {order} {direction}, log_stream {direction}"
                " LIMIT ? OFFSET ?",
                (tenant, log_group, len(prefix or ""), prefix or "", limit + 1, offset),
            ).fetchall()
        items = [
            {
                "logStreamName": name,
                "creationTime": created,
                "firstEventTimestamp": first,
                "lastEventTimestamp": last,
                "lastIngestionTime": ingested,
                "storedBytes": stored,
            }
            for name, created, first, last, ingested, stored in rows[:limit]
        ]
        token = _encode(str(offset + limit)) if len(rows) > limit else None
        return DescribePage(items, token)

    def filter(
        self,
        tenant: str,
        log_group: str,
        *,
        start_ms: int | None,
        end_ms: int | None,
        pattern: str | None,
        stream_names: Sequence[str] | None,
        stream_prefix: str | None,
        limit: int,
        next_token: str | None,
    ) -> FilterResult:
        check_filter_limit(limit)
        match = compile_pattern(pattern)
        cursor = (-1, -1)
        if next_token:
            try:
                ts, seq = base64.urlsafe_b64decode(next_token.encode()).decode().split(":")
                cursor = (int(ts), int(seq))
            except ValueError:
                raise InvalidParameter("Invalid nextToken.") from None
        events: list[dict[str, object]] = []
        while True:
            sql = (
                "SELECT seq, log_stream, timestamp_ms, ingestion_ms, message FROM log_events"
                " WHERE tenant = ? AND log_group = ? AND (timestamp_ms, seq) > (?, ?)"
                " AND timestamp_ms >= ? AND timestamp_ms <= ?"
                " ORDER BY timestamp_ms, seq LIMIT ?"
            )
            args = (
                tenant,
                log_group,
                cursor[0],
                cursor[1],
                start_ms if start_ms is not None else 0,
                end_ms if end_ms is not None else 2**62,
                _SCAN_BATCH,
            )
            with self._db.locked() as conn:
                rows = conn.execute(sql, args).fetchall()
            for seq, stream, ts, ingested, message in rows:
                cursor = (ts, seq)
                if stream_names and stream not in stream_names:
                    continue
                if stream_prefix and not stream.startswith(stream_prefix):
                    continue
                if not match(message):
                    continue
                events.append(
                    {
                        "logStreamName": stream,
                        "timestamp": ts,
                        "message": message,
                        "ingestionTime": ingested,
                        "eventId": str(seq),
                    }
                )
                if len(events) >= limit:
                    token = base64.urlsafe_b64encode(f"{ts}:{seq}".encode()).decode()
                    return FilterResult(events=events, next_token=token)
            if len(rows) < _SCAN_BATCH:
                return FilterResult(events=events, next_token=None)


def _encode(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode(token: str) -> str:
    try:
        value = base64.urlsafe_b64decode(token.encode()).decode()
    except ValueError:
        raise InvalidParameter("Invalid nextToken.") from None
    return value


def _offset(token: str) -> int:
    raw = _decode(token)
    if not raw.isdigit():
        raise InvalidParameter("Invalid nextToken.")
    return int(raw)
