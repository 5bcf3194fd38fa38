"""What the kernel knows about the server's process tree: CPU, memory, process churn.

Read from /proc so the figures cover everything the platform runs (HTTP server,
scheduler, zygote and sandbox workers) without instrumenting any of it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    return _fields_at(f"/proc/{pid}/stat")


def _fields_at(path: str) -> list[str] | None:
    """The fields of a `stat` file (a process's or a thread's) after the command name."""
    try:
        with open(path) as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """`root` and all its live descendants (this kernel has no /proc/*/children)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid`, plus what its reaped children used (cutime + cstime).

    Sandbox workers are reaped by the zygote, so the CPU of workers that exited between
    two samples lands in the zygote's cutime and is still counted.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14.
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK


@dataclass(frozen=True)
class TreeCpu:
    server_s: float  # the server process alone (HTTP, engine, scheduler, SQLite)
    total_s: float  # server + zygote + workers

    def __sub__(self, other: TreeCpu) -> TreeCpu:
        return TreeCpu(self.server_s - other.server_s, self.total_s - other.total_s)


def tree_cpu(root: int) -> TreeCpu:
    pids = tree(root)
    return TreeCpu(cpu_seconds(root), sum(cpu_seconds(p) for p in pids))


def _kib(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class TreeMemory:
    processes: int
    rss_mib: float  # sum of RSS: counts pages shared by forked workers once per process
    pss_mib: float  # proportional set size: shared pages split, so the sum is honest

    def as_dict(self) -> dict[str, float]:
        return {"processes": self.processes, "rss_mib": self.rss_mib, "pss_mib": self.pss_mib}


def tree_memory(root: int) -> TreeMemory:
    pids = tree(root)
    rss = sum(_kib(f"/proc/{p}/status", "VmRSS:") for p in pids)
    pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
    return TreeMemory(len(pids), rss / 1024, pss / 1024)


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6, 7)) / _TICK


@dataclass(frozen=True)
class Load:
    """Who used the CPU during a workload: the server tree, this process (the client),
    and everything else on the machine, which only perturbs the figures."""

    wall_s: float
    server_s: float
    client_s: float
    other_s: float

    def cores(self, seconds: float) -> float:
        return seconds / self.wall_s if self.wall_s > 0 else 0.0


class LoadMeter:
    def __init__(self, server_pid: int | None) -> None:
        self._pid = server_pid
        self._t0 = time.monotonic()
        self._busy0 = machine_busy_s()
        self._self0 = cpu_seconds(os.getpid())
        self._server0 = tree_cpu(server_pid).total_s if server_pid else 0.0

    def read(self) -> Load:
        """Call while the server still runs: once reaped, its CPU moves to our cutime."""
        wall = time.monotonic() - self._t0
        busy = machine_busy_s() - self._busy0
        client = cpu_seconds(os.getpid()) - self._self0
        server = (tree_cpu(self._pid).total_s - self._server0) if self._pid else 0.0
        return Load(wall, server, client, max(0.0, busy - client - server))


def last_pid() -> int:
    """The most recently allocated pid (system-wide). Threads take pids too, so the growth
    counts processes and threads created meanwhile (fork churn shows up here)."""
    with open("/proc/loadavg") as f:
        return int(f.read().split()[4])


def pids_between(before: int, after: int) -> int:
    """Pids allocated between two last_pid() readings; pids wrap at pid_max."""
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    return (after - before) % pid_max


def self_rss_mib() -> float:
    return _kib("/proc/self/status", "VmRSS:") / 1024


def process_pss_mib(pid: int) -> float:
    """One process's proportional set size (its share of pages shared with others)."""
    return _kib(f"/proc/{pid}/smaps_rollup", "Pss:") / 1024


@dataclass(frozen=True)
class TaskStats:
    """One thread of a process: its context switches and CPU ticks so far."""

    voluntary: int  # it blocked: a lock, the GIL, I/O, a sleep
    involuntary: int  # it was preempted
    ticks: int  # utime + stime


def tasks(pid: int) -> dict[int, TaskStats]:
    """Every live thread of `pid` by its thread id (threads that ended are not counted)."""
    out: dict[int, TaskStats] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/status") as f:
                status = dict(line.split(":", 1) for line in f if "ctxt_switches" in line)
        except OSError:
            continue  # ended between the listing and the read
        fields = _fields_at(f"{base}/stat")
        if fields is None:
            continue
        out[int(tid)] = TaskStats(
            int(status["voluntary_ctxt_switches"]),
            int(status["nonvoluntary_ctxt_switches"]),
            int(fields[11]) + int(fields[12]),
        )
    return out


def user_system_s(pid: int) -> tuple[float, float]:
    """The process's own user and system CPU seconds (its threads', not its children's)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0, 0.0
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def written_bytes(pid: int) -> int:
    """Bytes the process has caused to be sent to storage (`/proc/<pid>/io`)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
