"""How every SQLite adapter opens its file and runs a transaction.

WAL with `synchronous=NORMAL`: a committed transaction survives the kill -9 of the
process at any instant (the WAL is in the OS before commit returns); only an OS crash
can lose the last transactions, which is the trade every embedded engine makes for
speed. WAL also lets readers run beside the one writer SQLite admits at a time.

Each file has one connection under one lock: statements take microseconds, and a
connection per thread would leak under a thread-per-request server. A write is one
`BEGIN IMMEDIATE` transaction: it takes SQLite's write lock before reading, so the
checks it makes cannot interleave with another writer, thread or process.

Group commit (`grouped`): the hot writes (the engine's commits) are functions rather
than blocks, so that whichever thread holds the lock runs every write queued by the
threads waiting for it, each in a savepoint of one transaction (a write alone needs
none), and one COMMIT makes them all durable before any of them returns. Under load
the lock then changes hands once per group instead of once per write, and the WAL
takes one append for pages several writes share (an index's, a counter's). Why by
hand: sqlite3 has no such mode, and a write thread of its own would add a hand-off to
every write.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from treadle.disk_full import translating_disk_full
from treadle.domain.partition import owner
from treadle.failpoints import Kind, boundary

log = logging.getLogger(__name__)

# How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_S = 30
# Writes one group commit takes at most: bounds how long the first one waits.
GROUP_MAX = 64

T = TypeVar("T")


class _Queued:
    """One write waiting for its group (`SqliteFile.grouped`)."""

    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], Any]) -> None:
        self.work = work
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are the explicit BEGINs below."""
    conn = sqlite3.connect(
        str(path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S
    )
    # Which process owns an execution (`domain/partition`), for the reads of several
    # processes sharing the file: each reads only its own timers.
    conn.create_function("treadle_owner", 2, owner, deterministic=True)
    return conn


class SqliteFile:
    """One database file behind one connection and one (re-entrant) lock."""

    def __init__(self, path: Path, *, schema: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = connect(path)
        self._lock = threading.RLock()
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._combining = threading.local()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            # Statement journals (a statement with triggers inside a transaction) spill
            # to a new file in /var/tmp past 64 KiB: five syscalls and an inode per
            # commit that changes a status. In memory they cost a copy of the pages.
            self._conn.execute("PRAGMA temp_store=MEMORY")
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

    def grouped(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(conn)` in a write transaction, atomically (a savepoint of its own), maybe
        with other threads' writes: committed, or raising what it raised, before this
        returns. `work` may run on another thread, so it reads no thread's state."""
        if getattr(self._combining, "active", False):
            return work(self._conn)  # called from a write of this group: part of it
        item = _Queued(work)
        with self._queue_lock:
            self._queue.append(item)
        with self._lock:
            while not item.done:  # else another holder of the lock ran it
                with self._queue_lock:
                    group, self._queue = self._queue[:GROUP_MAX], self._queue[GROUP_MAX:]
                self._run_group(group)
        if item.error is not None:
            with translating_disk_full(self.path.parent):
                raise item.error
        return item.result  # type: ignore[no-any-return]

    def _run_group(self, group: list[_Queued]) -> None:
        conn = self._conn
        self._combining.active = True
        committed = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            if len(group) == 1:
                # Alone (most groups: 86% in W2), a write needs no savepoint: its failure
                # is the transaction's, taken back whole. Two statements fewer.
                alone = group[0]
                try:
                    alone.result = alone.work(conn)
                except Exception as exc:
                    alone.error = exc
                    self._rollback()
                    return
            else:
                for item in group:
                    conn.execute("SAVEPOINT w")
                    try:
                        item.result = item.work(conn)
                    except Exception as exc:  # that write's failure, not the group's...
                        item.error = exc
                        if not conn.in_transaction:
                            raise  # ...unless SQLite ended the transaction (a full disk)
                        conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
            boundary(Kind.COMMIT, "before")
            conn.execute("COMMIT")
            committed = True
        except BaseException as exc:
            # The group failed whole: none of its writes happened, and each says why.
            self._rollback()
            for item in group:
                item.error = exc
        finally:
            self._combining.active = False
            for item in group:
                item.done = True
        if committed:
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
