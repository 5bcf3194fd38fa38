"""Process limits per worker: a cgroup each, so a fork bomb is contained and nothing outlives
its invocation.

The platform (root) detects the host's cgroups once, at sandbox start, and makes one
directory of its own (``treadle-<server pid>-<n>``) under the pids (and freezer) hierarchy;
under it, one directory per worker with ``pids.max`` set. The platform moves each worker in
while it waits for its spec, before it runs anything (`WorkerGroup.join`): every process it
starts is born inside, and a tenant uid cannot leave (``cgroup.procs`` are root's).

- cgroup v1 (this project's CI): ``/sys/fs/cgroup/pids`` and, if mounted,
  ``/sys/fs/cgroup/freezer`` (``freezer.state``).
- cgroup v2 (unified ``/sys/fs/cgroup``): one directory, ``pids.max``, ``cgroup.freeze``.

When an invocation ends, `WorkerGroup.sweep` kills every process of the worker's cgroup but
the worker: frozen first, so nothing forks between reading the list and the kill. Killed
tasks leave ``cgroup.procs`` as they exit (zombies included), which is what it waits for.

The sandbox's own directory also gets a ``pids.max`` (half the host's pid space): many
workers bombing at once still leave the host room to run.

Stdlib only: `limit` and `reap_children` run in the worker, which the zygote imports.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Lambda's limit on processes and threads of one execution environment.
MAX_PROCESSES = 1024
ROOT = Path("/sys/fs/cgroup")
# How long a sweep may take before it gives up (and the worker is discarded instead).
SWEEP_TIMEOUT_S = 2.0
_FREEZE_WAIT_S = 0.2
_counter = itertools.count()


def limit(resources: Mapping[str, Any] | None) -> None:
    """In the worker, as root, before confinement: the fallback without cgroups.

    ``nproc`` caps the processes of the tenant's uid (all its workers together); set
    while root, it binds once the worker becomes that uid.
    """
    nproc = (resources or {}).get("nproc")
    if nproc is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))


def reap_children() -> None:
    """In the worker: collect children the sweep killed, so no zombie piles up."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _write(path: Path, value: str) -> None:
    with open(path, "w") as file:
        file.write(value)


def _pids(path: Path) -> list[int]:
    # os-level reads: this runs after every invocation (~3 us; pathlib's costs ~15 us).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        return [int(line) for line in data.split()]
    except (OSError, ValueError):
        return []
    finally:
        os.close(fd)


class WorkerGroup:
    """One worker's cgroup directories (pids first; the freezer's, on v1, second)."""

    def __init__(self, version: int, dirs: Sequence[Path]) -> None:
        self.version = version
        self.dirs = tuple(dirs)
        self._procs = self.dirs[0] / "cgroup.procs"

    def pids(self) -> list[int]:
        return _pids(self._procs)

    def join(self, pid: int) -> None:
        """Move a worker in, while it waits for its spec: before it runs anything.

        A migration waits for an RCU grace period when none happened lately (5-10 ms
        here), which is why the sandbox does it ahead, on spare workers (`spares`).
        """
        for directory in self.dirs:
            _write(directory / "cgroup.procs", str(pid))

    def sweep(self, keep: int | None = None) -> bool:
        """Kill every process but `keep`; True once only `keep` (or none) is left.

        Costs one read when there is nothing to kill, the usual case.
        """
        others = [pid for pid in self.pids() if pid != keep]
        if not others:
            return True
        deadline = time.monotonic() + SWEEP_TIMEOUT_S
        while others and time.monotonic() < deadline:
            frozen = self._freeze(True)
            for pid in self.pids() if frozen else others:
                if pid != keep:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            # Always, even when freezing timed out half way: the worker must run again.
            self._freeze(False)  # killed tasks die as they thaw
            time.sleep(0.001)
            others = [pid for pid in self.pids() if pid != keep]
        return not others

    def _freeze(self, on: bool) -> bool:
        if self.version == 2:
            path, value = self.dirs[0] / "cgroup.freeze", "1" if on else "0"
        elif len(self.dirs) > 1:
            path, value = self.dirs[1] / "freezer.state", "FROZEN" if on else "THAWED"
        else:
            return False
        try:
            _write(path, value)
        except OSError:
            return False
        if not on:
            return True
        deadline = time.monotonic() + _FREEZE_WAIT_S
        while time.monotonic() < deadline:
            if self._frozen():
                return True
            time.sleep(0.0005)
        return False  # a task in uninterruptible sleep: kill without the guarantee

    def _frozen(self) -> bool:
        try:
            if self.version == 2:
                return "frozen 1" in (self.dirs[0] / "cgroup.events").read_text()
            return (self.dirs[1] / "freezer.state").read_text().strip() == "FROZEN"
        except OSError:
            return False

    def remove(self) -> bool:
        """Kill what is left and remove the directories; False if some are still busy."""
        self.sweep()
        removed = True
        for directory in self.dirs:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    log.warning("sandbox: cannot remove cgroup %s: %s", directory, exc)
                removed = False
        return removed


class ResourceGroups:
    """The sandbox's side: detect once, one directory per sandbox, one per worker."""

    def __init__(self, max_processes: int, root: Path = ROOT) -> None:
        self.max_processes = max_processes
        self.version = 0
        self._bases: list[Path] = []
        self._pending: list[WorkerGroup] = []
        self._lock = threading.Lock()  # invocations, the watchdog and close share _pending
        if os.geteuid() != 0:
            return
        try:
            self._setup(root)
        except OSError as exc:
            log.warning("sandbox: cannot use cgroups (%s)", exc)
            self._bases = []
            self.version = 0

    @property
    def available(self) -> bool:
        return bool(self._bases)

    def _setup(self, root: Path) -> None:
        name = f"treadle-{os.getpid()}-{next(_counter)}"
        if (root / "pids" / "cgroup.procs").exists():
            self.version = 1
            hierarchies = [root / "pids"]
            if (root / "freezer" / "cgroup.procs").exists():
                hierarchies.append(root / "freezer")
        elif "pids" in _read(root / "cgroup.controllers").split():
            self.version = 2
            # Children get the pids controller; the root cgroup holds no processes rule.
            _write(root / "cgroup.subtree_control", "+pids")
            hierarchies = [root]
        else:
            return
        for hierarchy in hierarchies:
            _remove_stale(hierarchy)
        for hierarchy in hierarchies:
            base = hierarchy / name
            _mkdir(base)
            self._bases.append(base)
        if self.version == 2:
            _write(self._bases[0] / "cgroup.subtree_control", "+pids")
        _write(self._bases[0] / "pids.max", str(_host_share(self.max_processes)))

    def create(self) -> WorkerGroup | None:
        """A new worker's cgroup, limited; None where there are no cgroups."""
        if not self._bases:
            return None
        name = f"w{next(_counter)}"
        dirs = [base / name for base in self._bases]
        for directory in dirs:
            _mkdir(directory)
        _write(dirs[0] / "pids.max", str(self.max_processes))
        return WorkerGroup(self.version, dirs)

    def release(self, group: WorkerGroup | None) -> None:
        """The worker is discarded: remove its cgroup now, or once its tasks are gone."""
        if group is not None and not group.remove():
            with self._lock:
                self._pending.append(group)

    def collect(self) -> None:
        """Retry removing cgroups whose tasks were still exiting."""
        if not self._pending:
            return
        with self._lock:
            pending, self._pending = self._pending, []
        for group in pending:
            self.release(group)

    def close(self) -> None:
        deadline = time.monotonic() + SWEEP_TIMEOUT_S
        self.collect()
        while self._pending and time.monotonic() < deadline:
            time.sleep(0.01)
            self.collect()
        for base in self._bases:
            for child in _children(base):
                with contextlib.suppress(OSError):
                    child.rmdir()
            with contextlib.suppress(OSError):
                base.rmdir()
        self._bases = []


def _mkdir(path: Path) -> None:
    # 0755 whatever the platform's umask (077): a tenant may read its own limits, as in a
    # Lambda environment; the files in it are root's to write.
    path.mkdir()
    path.chmod(0o755)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _children(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.is_dir()]
    except OSError:
        return []


def _host_share(per_worker: int) -> int:
    # Half the host's pid space for all workers together: the host keeps room to act.
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = 32768
    return max(per_worker, pid_max // 2)


def _remove_stale(hierarchy: Path) -> None:
    """Directories left by a server that died without closing its sandbox (its pid gone)."""
    for base in hierarchy.glob("treadle-*-*"):
        owner = base.name.split("-")[1]
        if not owner.isdigit() or Path(f"/proc/{owner}").exists():
            continue
        for child in _children(base):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            base.rmdir()


_warned: set[str] = set()  # once per process, not once per sandbox


def report(groups: ResourceGroups, privileged: bool) -> None:
    """Say once, at start, when processes are not contained."""
    if groups.available:
        return
    if privileged:
        message = (
            "sandbox: no cgroups (pids controller) here: each tenant uid is limited to "
            f"{groups.max_processes} processes (RLIMIT_NPROC), and processes a handler "
            "leaves behind may survive its invocation (until its worker ends, or longer "
            "for a daemon that left the worker's session)"
        )
    else:
        message = (
            "sandbox: not root: no process limit for tenant code, and processes a handler "
            "leaves behind may survive its invocation (until its worker ends, or longer "
            "for a daemon that left the worker's session)"
        )
    if message not in _warned:
        _warned.add(message)
        log.warning(message)
