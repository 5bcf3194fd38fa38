"""`treadle dev --processes N`: the first process starts the others and keeps them up.

Why several: one server process is bound by its interpreter's lock long before the
machine's cores are busy (benchmarks/README.md). N processes share the data directory's
SQLite files (WAL: one writer at a time, readers alongside), one port (a socket each,
SO_REUSEPORT: the kernel spreads new connections) and the data directory's lock, which
the first takes and passes on, so that no other platform starts on the directory
until the last of them is gone. Each drives its share of the executions
(`domain/partition`); the first also runs the singletons (relay, promoter, schedules,
garbage collection).

The others die with the first (PR_SET_PDEATHSIG, set by each of them at its start),
so a kill -9 of the first leaves nothing running; the first starts again one that dies
(a backoff against crash loops). They run in their own process group: a Ctrl-C
reaches the first only, which stops them in order instead of racing their restarts.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from treadle import affinity
from treadle.settings import (
    ENV_CPUS,
    ENV_LISTEN_PORT,
    ENV_LOCK_FD,
    ENV_PROCESS_INDEX,
    ENV_READY_FD,
)

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0
# A process that ran this long before dying is restarted after the first backoff again.
_STABLE_S = 60.0


@dataclass(frozen=True)
class Role:
    """What the first process passed to one of the others."""

    index: int
    port: int
    lock_fd: int
    ready_fd: int

    def ready(self) -> None:
        """Tell the first process this one serves (it says "ready" once all do)."""
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)


def role_from_env() -> Role | None:
    """This process's role if the first process started it (else None: it is the first).

    Arms the death signal first: if the first process is already gone, exits."""
    raw = os.environ.get(ENV_PROCESS_INDEX)
    if raw is None:
        return None
    index, _, parent = raw.partition(":")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != int(parent):  # it died before the signal was armed
        os._exit(1)
    return Role(
        int(index),
        int(os.environ[ENV_LISTEN_PORT]),
        int(os.environ[ENV_LOCK_FD]),
        int(os.environ[ENV_READY_FD]),
    )


class Supervisor:
    """Processes 1..count-1, each started and watched by a thread of its own (the death
    signal follows the thread that started a process, so that thread must outlive it)."""

    def __init__(self, argv: list[str], count: int, port: int, lock_fd: int) -> None:
        self._argv = argv
        self._port = port
        self._lock_fd = lock_fd
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._ready = {i: threading.Event() for i in range(1, count)}
        self._threads = [
            threading.Thread(target=self._keep, args=(i,), name=f"process-{i}", daemon=True)
            for i in range(1, count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether every process came up within `timeout_s` (each its first time)."""
        deadline = time.monotonic() + timeout_s
        return all(e.wait(max(0.0, deadline - time.monotonic())) for e in self._ready.values())

    def signal_stop(self) -> None:
        """Ask every process to stop (they end held requests and drain like the first)."""
        self._stopping.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> None:
        """Wait for them to exit; past `timeout_s`, kill what is left."""
        self.signal_stop()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, index: int) -> tuple[subprocess.Popen[bytes], int]:
        """The process, and the end of a pipe it writes once it serves."""
        ready_r, ready_w = os.pipe()
        env = {
            **os.environ,
            ENV_PROCESS_INDEX: f"{index}:{os.getpid()}",
            ENV_LISTEN_PORT: str(self._port),
            ENV_LOCK_FD: str(self._lock_fd),
            ENV_READY_FD: str(ready_w),
            # Started from a thread kept on this process's core: it takes its own.
            ENV_CPUS: affinity.children_cores(),
        }
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "treadle.cli", *self._argv],
                env=env,
                pass_fds=(self._lock_fd, ready_w),
                process_group=0,
            )
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
        return proc, ready_r

    def _keep(self, index: int) -> None:
        backoff = _FIRST_BACKOFF_S
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    proc, ready_r = self._spawn(index)
                    self._procs[index] = proc
                except OSError:  # no process could be made (out of memory, of pids)
                    log.exception("cannot start server process %d; trying again", index)
                    spawned = False
                else:
                    spawned = True
            if not spawned:
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            born = time.monotonic()
            with contextlib.suppress(OSError):
                if os.read(ready_r, 1):  # empty: it exited before serving
                    self._ready[index].set()
            os.close(ready_r)
            status = proc.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - born
            if lived > _STABLE_S:
                backoff = _FIRST_BACKOFF_S
            log.warning(
                "server process %d (pid %d) exited with status %d after %.1f s; "
                "starting it again in %.1f s",
                index, proc.pid, status, lived, backoff,
            )  # fmt: skip
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)
