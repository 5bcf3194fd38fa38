"""Workers forked ahead, already in their cgroup, so a cold start pays for neither.

Moving a process into a cgroup takes the kernel's cgroup_threadgroup_rwsem for writing,
which waits for an RCU grace period unless a migration happened moments before: 5-10 ms
on an otherwise idle host, more than the whole cold start. A new worker does nothing
until it reads its spec, so the sandbox forks `SPARES` of them in the background (the
thread `sandbox-spares`, woken when one is taken), moves each into a fresh cgroup there,
and a cold start takes one: the fork and the migration are both off its path. A burst
beyond the spares spawns and joins on the spot (back-to-back migrations are cheaper).

A spare holds no tenant's data: it is the zygote's image, waiting on its channel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from treadle.adapters.sandbox.cgroups import ResourceGroups, WorkerGroup
from treadle.adapters.sandbox.spawner import WorkerProcess, Zygote

log = logging.getLogger(__name__)

SPARES = 2
REFILL_INTERVAL_S = 0.05  # also woken at once when a spare is taken


@dataclass(eq=False)
class Started:
    """A forked worker waiting for its spec, with the server's ends of its pipes."""

    zygote: Zygote
    proc: WorkerProcess
    chan: socket.socket
    log_fd: int
    group: WorkerGroup | None

    def discard(self, groups: ResourceGroups | None) -> None:
        self.proc.kill()
        self.proc.close()
        self.chan.close()
        with contextlib.suppress(OSError):
            os.close(self.log_fd)
        if groups is not None:
            groups.release(self.group)


def start_worker(zygote: Zygote, tmp_dir: Path, groups: ResourceGroups | None) -> Started:
    """Fork a worker and move it into a new cgroup of its own (where there are cgroups)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    log_r, log_w = os.pipe()
    try:
        proc = zygote.spawn(theirs.fileno(), log_w, tmp_dir)
    except BaseException:
        ours.close()
        os.close(log_r)
        raise
    finally:
        theirs.close()
        os.close(log_w)
    os.set_blocking(log_r, False)
    started = Started(zygote, proc, ours, log_r, None)
    if groups is not None:
        try:
            started.group = groups.create()
            if started.group is not None:
                started.group.join(proc.pid)
        except BaseException:
            started.discard(groups)  # a worker outside its cgroup never runs code
            raise
    return started


class SparePool:
    def __init__(
        self,
        groups: ResourceGroups | None,
        tmp_root: Path,
        zygote: Callable[[], Zygote | None] = lambda: None,
    ) -> None:
        self._groups = groups
        self._tmp_root = tmp_root
        self._zygote = zygote
        self._lock = threading.Lock()
        self._spares: list[Started] = []
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if groups is not None and groups.available:
            # Without cgroups a spawn is only a fork: nothing worth doing ahead.
            self._thread = threading.Thread(target=self._run, name="sandbox-spares", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(REFILL_INTERVAL_S)
            self._wake.clear()
            if self._closed:
                return
            self.refill(self._zygote())

    def take(self, zygote: Zygote) -> Started | None:
        """A spare of this zygote, still alive; None when there is none."""
        while True:
            with self._lock:
                if not self._spares:
                    return None
                spare = self._spares.pop(0)
            self._wake.set()
            if spare.zygote is zygote and spare.proc.running():
                return spare
            spare.discard(self._groups)

    def refill(self, zygote: Zygote | None) -> None:
        """Fork spares up to `SPARES`."""
        while zygote is not None and zygote.alive and not self._closed:
            with self._lock:
                if len(self._spares) >= SPARES:
                    return
            try:
                spare = start_worker(zygote, self._tmp_root, self._groups)
            except Exception as exc:  # out of processes, zygote restarting: try later
                log.debug("sandbox: no spare worker: %s", exc)
                return
            with self._lock:
                self._spares.append(spare)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)  # before the spares are taken down: none added after
        with self._lock:
            spares, self._spares = self._spares, []
        for spare in spares:
            spare.discard(self._groups)
