"""Doorbells between the server processes of one data directory.

A change committed in one process may set a timer that another process drives (a
callback answered here for an execution that process owns, `domain/partition`). The
owner's scheduler would find it at its next look, up to a second later; the doorbell
wakes it now. A ring carries only the timer's due time: the owner reads the row itself,
so a lost ring costs latency, never work. Two more rings are for the first process's
singletons: a schedule changed elsewhere (its loop may sleep a minute) and capacity
freed elsewhere (the promoter of queued starts would wait for its next scan).

One FIFO per process, `<run dir>/doorbell-<index>`, in the private data directory (no
tenant reaches it). A FIFO rather than a Unix socket: a socket's path is limited to
108 bytes, a data directory's is not. Each ring is one 8-byte write, atomic in a pipe;
a full pipe or an owner not running drops the ring (it is woken already, or its start
reads every due row).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_RING = struct.Struct(">q")
_STOP = -1
# Signals (negative, unlike due times): what `on_signal` is called with.
SCHEDULES = -2
PROMOTE = -3


def _fifo(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        os.mkfifo(path, 0o600)
        return
    if not stat.S_ISFIFO(mode):  # never write into something else of that name
        path.unlink()
        os.mkfifo(path, 0o600)


class Doorbells:
    """This process's doorbell (rung by the others) and the others' (rung from here)."""

    def __init__(
        self,
        run_dir: Path,
        index: int,
        on_ring: Callable[[int], None],
        on_signal: Callable[[int], None] | None = None,
    ) -> None:
        """`on_ring(due_ms)`: a timer of this process is due then; `on_signal(code)`:
        SCHEDULES or PROMOTE was rung here."""
        self._dir = run_dir
        self._index = index
        self._on_ring = on_ring
        self._on_signal = on_signal
        self._lock = threading.Lock()
        self._out: dict[int, int] = {}  # index -> write descriptor, opened on first ring
        self._stopped = False
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        own = self.path(index)
        _fifo(own)
        # Read-write: the FIFO then always has a writer, so reads block instead of
        # seeing an end whenever no other process holds it open.
        self._in = os.open(own, os.O_RDWR | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._listen, name="doorbell", daemon=True)

    def path(self, index: int) -> Path:
        return self._dir / f"doorbell-{index}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Idempotent; also after a start-up that failed before `start`."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._thread.ident is None:
            os.close(self._in)
        else:  # the listener closes its descriptor when it reads this
            with contextlib.suppress(OSError):
                os.write(self._in, _RING.pack(_STOP))
            self._thread.join(timeout=5)
        with self._lock:
            for fd in self._out.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._out.clear()

    def ring(self, index: int, due_ms: int) -> None:
        """Wake process `index` for a timer due at `due_ms` (best effort, never blocks)."""
        self._send(index, due_ms)

    def signal(self, index: int, code: int) -> None:
        """Ring SCHEDULES or PROMOTE at process `index` (best effort, never blocks)."""
        self._send(index, code)

    def _send(self, index: int, value: int) -> None:
        with self._lock:
            fd = self._out.get(index)
            if fd is None:
                try:
                    fd = os.open(self.path(index), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError:  # not running (ENXIO: no reader; ENOENT: never started)
                    return
                self._out[index] = fd
            try:
                os.write(fd, _RING.pack(value))
            except OSError as exc:
                if exc.errno != errno.EAGAIN:  # EPIPE: that process is gone; reopen next time
                    os.close(fd)
                    del self._out[index]

    def _listen(self) -> None:
        while True:
            try:
                data = os.read(self._in, 8 * 512)
            except OSError:
                log.exception("doorbell read failed")
                return
            dues = [_RING.unpack_from(data, at)[0] for at in range(0, len(data) - 7, 8)]
            if _STOP in dues:
                os.close(self._in)
                return
            try:
                timers = [due for due in dues if due >= 0]
                if timers:
                    self._on_ring(min(timers))
                if self._on_signal is not None:
                    for code in {due for due in dues if due < _STOP}:
                        self._on_signal(code)
            except Exception:  # the doorbell must outlive one bad wake-up
                log.exception("doorbell wake-up failed")
