"""Workers forked ahead, already in their cgroup, so a cold start pays for neither.

Moving a process into a cgroup takes the kernel's cgroup_threadgroup_rwsem for writing,
which waits for an RCU grace period unless a migration happened moments before: 5-10 ms
on an otherwise idle host, more than the whole cold start. A new worker does nothing
until it reads its spec, so the sandbox forks `SPARES` of them in the background (the
thread `sandbox-spares`, woken when one is taken), moves each into a fresh cgroup there,
and a cold start takes one: the fork and the migration are both off its path. A burst
beyond the spares spawns and joins on the spot (back-to-back migrations are cheaper).

A spare holds no tenant's data: it is the zygote's image, waiting on its channel.

`TenantSpares` goes one step further for tenants that ran code lately: a spare
confined for the tenant ahead (`confine.apply_spare`: network, namespace, new root,
still root), so that a new version's cold start leaves only its /tmp and code to
attach and the uid to drop. Measured with `make bench --only C1`: the cold start
without the ~3 ms of confinement. A tenant's spare only ever serves that tenant.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treadle.adapters.sandbox import mounts, protocol
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


TENANT_SPARES = 4  # tenants with a spare confined ahead, the most recently active
MAX_SPARE_DEATHS = 3


@dataclass(eq=False)
class _Wanted:
    zygote: Zygote
    code_home: str


class TenantSpares:
    """A confined spare for each of the last `TENANT_SPARES` tenants that spawned."""

    def __init__(
        self,
        groups: ResourceGroups | None,
        tmp_root: Path,
        plan: Callable[[str], dict[str, Any]],
        limit: int = TENANT_SPARES,
    ) -> None:
        self._groups = groups
        self._tmp_root = tmp_root
        self._plan = plan
        self._limit = limit
        self._lock = threading.Lock()
        self._spares: OrderedDict[str, tuple[Started, str]] = OrderedDict()
        self._wanted: OrderedDict[str, _Wanted] = OrderedDict()
        self._wake = threading.Event()
        self._closed = False
        self.served = 0  # cold starts that took a tenant's spare
        self._deaths = 0
        self._thread = threading.Thread(target=self._run, name="sandbox-tenants", daemon=True)
        self._thread.start()

    def take(self, tenant: str, zygote: Zygote, code_home: str) -> Started | None:
        """The tenant's spare, if it has one of this zygote, alive, for this code home;
        a new one is made for the tenant's next cold start in any case."""
        with self._lock:
            found = self._spares.pop(tenant, None)
            if not self._closed:
                self._wanted[tenant] = _Wanted(zygote, code_home)
                self._wanted.move_to_end(tenant)
        self._wake.set()
        if found is None:
            return None
        spare, home = found
        if spare.zygote is zygote and home == code_home and spare.proc.running():
            with self._lock:
                self.served += 1
            return spare
        if spare.zygote is zygote and not spare.proc.running():
            self._died(spare)
        spare.discard(self._groups)
        return None

    def has(self, tenant: str, zygote: Zygote) -> bool:
        """Whether the tenant has a spare of this zygote now (it may be taken meanwhile)."""
        with self._lock:
            found = self._spares.get(tenant)
        return found is not None and found[0].zygote is zygote

    def take_with_mounts(
        self, tenant: str, zygote: Zygote, tmp_dir: Path, code_dir: Path
    ) -> tuple[Started | None, list[int]]:
        """The tenant's spare and copies of the /tmp and code mounts it attaches (sent
        after the spec), or (None, []) if it has none or the kernel refuses the copies."""
        # Its root shows the tenant's code home, where `attach_function` puts the code.
        spare = self.take(tenant, zygote, str(code_dir.parent))
        if spare is None:
            return None, []
        fds: list[int] = []
        try:
            for path in (tmp_dir, code_dir):
                fds.append(mounts.clone_tree(str(path)))
        except OSError as exc:  # a fresh worker binds them itself: no reason to fail
            log.warning("sandbox: no mount copies for a spare (%s): a fresh worker starts", exc)
            for fd in fds:
                os.close(fd)
            spare.discard(self._groups)
            return None, []
        return spare, fds

    def _died(self, spare: Started) -> None:
        """A spare that died waiting could not be confined here: after a few, none more."""
        with self._lock:
            self._deaths += 1
            if self._deaths < MAX_SPARE_DEATHS or self.served:
                return
            self._closed = True
        try:
            said = os.read(spare.log_fd, 4096).decode(errors="replace").strip()
        except OSError:
            said = ""
        log.warning(
            "sandbox: spares confined ahead keep dying, cold starts go without them: %s",
            said.splitlines()[-1] if said else "no output",
        )

    def ready(self) -> list[str]:
        """The tenants that have a spare now, least recently active first."""
        with self._lock:
            return list(self._spares)

    def _run(self) -> None:
        while True:
            self._wake.wait(REFILL_INTERVAL_S)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                wanted, self._wanted = self._wanted, OrderedDict()
            for tenant, want in wanted.items():
                self._make(tenant, want)

    def _make(self, tenant: str, want: _Wanted) -> None:
        with self._lock:
            if tenant in self._spares:
                self._spares.move_to_end(tenant)
                return
        if not want.zygote.alive:
            return
        try:
            spare = start_worker(want.zygote, self._tmp_root, self._groups)
        except Exception as exc:  # out of processes, zygote restarting: at the next spawn
            log.debug("sandbox: no spare for tenant %s: %s", tenant, exc)
            return
        try:
            frame = {"t": "spare", "confine": self._plan(tenant), "code_home": want.code_home}
            protocol.send_frame(spare.chan, frame)
        except Exception as exc:
            log.debug("sandbox: spare for tenant %s not confined: %s", tenant, exc)
            spare.discard(self._groups)
            return
        evicted: list[Started] = []
        with self._lock:
            if self._closed:
                evicted.append(spare)
            else:
                self._spares[tenant] = (spare, want.code_home)
                while len(self._spares) > self._limit:
                    evicted.append(self._spares.popitem(last=False)[1][0])
        for old in evicted:
            old.discard(self._groups)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spares = [spare for spare, _ in self._spares.values()]
            self._spares.clear()
        self._wake.set()
        self._thread.join(timeout=10)
        for spare in spares:
            spare.discard(self._groups)
