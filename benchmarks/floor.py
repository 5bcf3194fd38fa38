"""The machine's floor, measured in-process: what one durable commit and one fork cost.

No platform can persist a step faster than one SQLite commit in the same mode, nor
start a sandbox process faster than a fork: these put the W1 and C1 figures in scale.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks import procfs
from benchmarks.spec import Env, Metric, Workload, median

COMMITS = 500
FORKS = 200


def sqlite_commit_us(n: int = COMMITS) -> float:
    """Median µs of one autocommitted tiny INSERT, WAL + synchronous=NORMAL (the server's
    mode): with NORMAL a WAL commit is a write(2) without fsync, so this is mostly CPU."""
    with tempfile.TemporaryDirectory(prefix="treadle-floor-") as tmp:
        conn = sqlite3.connect(str(Path(tmp) / "floor.db"), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            samples = []
            for i in range(n + 50):
                t0 = time.perf_counter()
                conn.execute("INSERT INTO t (v) VALUES (?)", (f"v{i}",))
                samples.append(time.perf_counter() - t0)
            return median(samples[50:]) * 1e6  # the first ones create the WAL file
        finally:
            conn.close()


def fork_us(n: int = FORKS) -> tuple[float, float]:
    """Median µs of os.fork() + child _exit(0) + waitpid in this (boto3-sized) process,
    and of the fork() call alone (the rest is the child's exit and the reap)."""
    whole, call = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        t1 = time.perf_counter()
        os.waitpid(pid, 0)
        whole.append(time.perf_counter() - t0)
        call.append(t1 - t0)
    return median(whole) * 1e6, median(call) * 1e6


def run(env: Env) -> dict[str, float]:
    fork_exit_wait, fork_call = fork_us()
    return {
        "sqlite_commit_us": sqlite_commit_us(),
        "fork_us": fork_exit_wait,
        "fork_call_us": fork_call,
        "fork_parent_rss_mib": procfs.self_rss_mib(),
    }


WORKLOAD = Workload(
    id="FLOOR",
    title=f"machine floor (in-process): SQLite commit x{COMMITS}, fork+exit+wait x{FORKS}",
    metrics=(
        Metric("sqlite_commit_us", "SQLite commit (WAL, NORMAL, tiny insert)", "µs"),
        Metric("fork_us", "os.fork() + _exit + waitpid", "µs"),
        Metric("fork_call_us", "os.fork() call alone (parent side)", "µs"),
        Metric("fork_parent_rss_mib", "RSS of the forking process", "MiB"),
    ),
    run=run,
    budget_s=lambda o: 30.0,
    needs_server=False,
)
