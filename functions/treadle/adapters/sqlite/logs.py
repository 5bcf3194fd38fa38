"""SQLite adapter of the LogStore port (its own database file: logs are not state).

Appends are written behind (`_Writer`): an invocation hands its lines over and goes
on, and one thread writes what every invocation handed over meanwhile in one
transaction. On a busy server that is one commit for several invocations instead of
one each, taken off the path that holds a sandbox worker. As on Lambda, whose logs
reach CloudWatch after the invocation returns, a line becomes readable shortly after
its invocation ends; reads in this process write what is pending first, so they see
every line appended before them. What a kill -9 can lose is what was handed over in
the last few milliseconds (`FLUSH_AFTER_S`); a clean stop writes everything (`close`).
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import threading
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

log = logging.getLogger(__name__)

_SCAN_BATCH = 1000
# How long the writer lets lines gather after the first one it finds: more lines per
# commit against a longer window for a kill -9.
FLUSH_AFTER_S = 0.005
# Lines waiting beyond which an append writes them itself: memory stays bounded when
# the disk is slower than the lines come.
MAX_PENDING = 50_000
_INSERT = (
    "INSERT INTO log_events (tenant, log_group, log_stream, timestamp_ms,"
    " ingestion_ms, message) VALUES (?, ?, ?, ?, ?, ?)"
)
_Row = tuple[str, str, str, int, int, str]
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
        self._writer = _Writer(self._db)

    def append(
        self, tenant: str, log_group: str, log_stream: str, events: Sequence[tuple[int, str]]
    ) -> None:
        now = int(time.time() * 1000)
        self._writer.add([(tenant, log_group, log_stream, ts, now, msg) for ts, msg in events])

    def flush(self) -> None:
        """Write every line appended so far (reads call it: they see all of them)."""
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
        self._db.close()

    def log_group_exists(self, tenant: str, log_group: str) -> bool:
        self.flush()
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
        self.flush()
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
        self.flush()
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
        self.flush()
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


class _Writer:
    """Writes appended lines behind, on a thread of its own started at the first line.

    Why by hand: the sqlite3 module has no asynchronous writes, and a queue and a pool
    would add a hand-off per line where this adds one per batch.
    """

    def __init__(self, db: SqliteFile) -> None:
        self._db = db
        self._pending: list[_Row] = []
        self._cond = threading.Condition()
        # One batch written at a time, in the order the lines came.
        self._writing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, rows: list[_Row]) -> None:
        with self._cond:
            if not self._closed:
                self._pending.extend(rows)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="log-writer", daemon=True
                    )
                    self._thread.start()
                self._cond.notify()
                if len(self._pending) < MAX_PENDING:
                    return
                rows = []  # pending, and too many of them: written here and now
        if rows:
            self._write(rows)  # closed: no writer thread any more
        else:
            self.flush()

    def flush(self) -> None:
        with self._writing:
            with self._cond:
                rows, self._pending = self._pending, []
            self._write(rows)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return  # `close` writes what is left
            time.sleep(FLUSH_AFTER_S)
            self.flush()

    def _write(self, rows: list[_Row]) -> None:
        if not rows:
            return

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT, rows)

        try:
            self._db.grouped(insert)
        except Exception:  # logs are best effort; the invocations they tell of are done
            log.exception("could not store %d log lines", len(rows))


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
