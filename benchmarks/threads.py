"""Where W2's (or W2b's) server CPU goes, by thread: CPU and context switches per execution.

    .venv/bin/python -m benchmarks.threads                 # 2,000 one-step executions
    .venv/bin/python -m benchmarks.threads --count 5000
    .venv/bin/python -m benchmarks.threads --batch         # W2b: batch starts of 100

A py-spy profile shows which Python code holds the GIL; it does not show what the
server pays around it. This does: per group of threads (the HTTP pool, the invocation
lane, the event loop...), the CPU each used and how often each blocked (voluntary
switches: a lock, the GIL, I/O) or was preempted, per execution; and for the server
process, user against system CPU and the bytes it wrote to storage. Thread names come
from `py-spy dump` (CPython does not give its threads' names to the kernel); without
py-spy the threads are grouped as one. One server process (`--processes 1`): the
figures are the structure's, not the spread's.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from benchmarks import batch, procfs, throughput
from benchmarks.common import closed_summary, start_many, wait_all_closed
from benchmarks.profiling import py_spy
from benchmarks.server import BenchServer
from benchmarks.spec import Deadline, Env, Options

WARM_UP = 200
_DUMPED = re.compile(r'^Thread (0x[0-9A-Fa-f]+|\d+) \([^)]*\): "([^"]*)"', re.MULTILINE)
# A pool's threads are numbered (`invoke_3`): one group per pool.
_NUMBERED = re.compile(r"_\d+$")


def thread_names(dump: str) -> dict[int, str]:
    """Thread id -> group name, from `py-spy dump`'s text."""
    names: dict[int, str] = {}
    for tid, name in _DUMPED.findall(dump):
        names[int(tid, 0)] = _NUMBERED.sub("", name)
    return names


@dataclass
class Group:
    threads: int = 0
    ticks: int = 0
    voluntary: int = 0
    involuntary: int = 0


def by_group(
    before: Mapping[int, procfs.TaskStats],
    after: Mapping[int, procfs.TaskStats],
    names: Mapping[int, str],
) -> dict[str, Group]:
    """What each group of threads used between two readings (threads born in between
    count from zero)."""
    groups: dict[str, Group] = defaultdict(Group)
    zero = procfs.TaskStats(0, 0, 0)
    for tid, end in after.items():
        start = before.get(tid, zero)
        group = groups[names.get(tid, "?")]
        group.threads += 1
        group.ticks += end.ticks - start.ticks
        group.voluntary += end.voluntary - start.voluntary
        group.involuntary += end.involuntary - start.involuntary
    return dict(groups)


def _dump(pid: int) -> str:
    exe = py_spy()
    if exe is None:
        return ""
    done = subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True)
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="executions to time")
    parser.add_argument(
        "--batch", action="store_true", help="W2b: started by batch starts of 100, not Invoke"
    )
    args = parser.parse_args(argv)
    server = BenchServer()
    server.start()
    try:
        env = Env(server=server, options=Options(), deadline=Deadline.after(900))
        if args.batch:
            batch.setup(env)
            fn = batch.FUNCTION
        else:
            throughput.setup(env)
            fn = throughput.FUNCTION
            wait_all_closed(env, fn, start_many(env, fn, [{}] * WARM_UP))
        pid = server.pid
        tasks0, tree0 = procfs.tasks(pid), procfs.tree_cpu(pid)
        own0, wrote0 = procfs.user_system_s(pid), procfs.written_bytes(pid)
        client0 = time.process_time()
        if args.batch:
            started = batch.start_batches(env, args.count, "timed")
        else:
            started = start_many(env, fn, [{}] * args.count)
        client = time.process_time() - client0
        done = wait_all_closed(env, fn, started)
        tasks1, tree1 = procfs.tasks(pid), procfs.tree_cpu(pid)
        own1, wrote1 = procfs.user_system_s(pid), procfs.written_bytes(pid)
        names = thread_names(_dump(pid))
    finally:
        server.stop()
    n = len(done)
    last_end, failed = closed_summary(done)
    per = 1000 / n  # seconds in total -> ms per execution
    tree = tree1 - tree0
    print(f"{n} executions, {n / (last_end - started.first_s):.0f} completed/s, {failed} failed")
    print(
        f"CPU ms per execution: server {tree.server_s * per:.2f} (user "
        f"{(own1[0] - own0[0]) * per:.2f}, system {(own1[1] - own0[1]) * per:.2f}), "
        f"workers {(tree.total_s - tree.server_s) * per:.2f}, client {client * per:.2f}"
    )
    print(f"server wrote {(wrote1 - wrote0) / n / 1024:.0f} KiB per execution to storage")
    groups = by_group(tasks0, tasks1, names)
    head = f"{'threads':32} {'count':>5} {'CPU ms':>7} {'blocked':>8} {'preempted':>9}"
    print(f"\n{head}  (per execution)")
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1].ticks):
        if g.ticks == 0 and g.voluntary + g.involuntary < n / 100:
            continue  # idle through the run
        cpu = g.ticks / procfs._TICK * per
        print(f"{name:32} {g.threads:5} {cpu:7.2f} {g.voluntary / n:8.1f} {g.involuntary / n:9.1f}")
    blocked = sum(g.voluntary for g in groups.values())
    preempted = sum(g.involuntary for g in groups.values())
    print(f"{'all':32} {'':5} {'':7} {blocked / n:8.1f} {preempted / n:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
