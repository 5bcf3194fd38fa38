"""How every SQLite adapter opens its file and runs a transaction.

WAL with `synchronous=NORMAL`: a committed transaction survives the kill -9 of the
process at any instant (the WAL is in the OS before commit returns); only an OS crash
can lose the last transactions, which is the trade every embedded engine makes for
speed. WAL also lets readers run beside the one writer SQLite admits at a time.

Each file has one connection under one lock: statements take microseconds, and a
connection per thread would leak under a thread-per-request server. A write is one
`BEGIN IMMEDIATE` transaction: it takes SQLite's write lock before reading, so the
checks it makes cannot interleave with another writer, thread or process.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from treadle.disk_full import translating_disk_full
from treadle.failpoints import Kind, boundary

log = logging.getLogger(__name__)

# How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_S = 30


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are the explicit BEGINs below."""
    return sqlite3.connect(
        str(path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
    )


class SqliteFile:
    """One database file behind one connection and one (re-entrant) lock."""

    def __init__(self, path: Path, *, schema: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = connect(path)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            if schema:
                self._conn.executescript(schema)

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads: no write of this process lands between the
        statements of one block, so they see one state without a transaction."""
        with self._lock:
            yield self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Everything inside commits together or not at all (an exception rolls back).

        A full disk fails the transaction as `StorageFull` and leaves the connection
        usable: the next transaction succeeds as soon as space is back.
        """
        with self._lock, translating_disk_full(self.path.parent):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                boundary(Kind.COMMIT, "before")
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            boundary(Kind.COMMIT, "after")

    def _rollback(self) -> None:
        # SQLite may have rolled back already (SQLITE_FULL can end the transaction),
        # and a failed COMMIT may leave it open: roll back only what is still open, and
        # never let the rollback's own error hide the one that caused it.
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.warning("rollback of %s failed", self.path, exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
