"""The machine's floor, measured in-process: what one durable commit, one fork, one
hand-off to another process and back, and the official SDK's own work cost.

No platform can persist a step faster than one SQLite commit in the same mode, start a
sandbox process faster than a fork, hand an invocation to a worker process faster than
a round trip over a socket, nor run tenant code written with the unmodified SDK for
less than the SDK's own CPU (`benchmarks.sdk_floor`): these put the figures in scale,
and they bound what a target can ask of this machine (`benchmarks/README.md`, "What
the targets ask of this machine").
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import procfs
from benchmarks.spec import Env, Metric, Workload, median

COMMITS = 500
FORKS = 200
ROUND_TRIPS = 2000
SDK_INVOCATIONS = 1000


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


def round_trip_us(n: int = ROUND_TRIPS) -> tuple[float, float]:
    """Median µs of 64 bytes sent to a forked child over a socket pair and echoed back
    (what handing a frame to a sandbox worker and reading its answer costs at least),
    and the CPU of both processes per round trip."""
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echoing child: no Python-level cleanup, it only echoes and exits
        parent.close()
        while data := child.recv(64):
            child.sendall(data)
        os._exit(0)
    child.close()
    message, samples = b"x" * 64, []
    try:
        cpu_before = time.process_time()
        for _ in range(n + 100):
            t0 = time.perf_counter()
            parent.sendall(message)
            got = 0
            while got < len(message):
                chunk = parent.recv(64)
                if not chunk:
                    raise RuntimeError("the echoing child closed its end")
                got += len(chunk)
            samples.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu_before
    finally:
        parent.close()  # the child sees the end and exits; it is reaped either way
        _, _, usage = os.wait4(pid, 0)
    cpu += usage.ru_utime + usage.ru_stime
    return median(samples[100:]) * 1e6, cpu / (n + 100) * 1e6


def sdk_us(count: int = SDK_INVOCATIONS) -> dict[str, float]:
    """The SDK's own CPU per one-step invocation and per step, in a process of its own
    (the measurement points the SDK's cached client at an instant one)."""
    command = [sys.executable, "-m", "benchmarks.sdk_floor", "--json", "--count", str(count)]
    # This process's import path, so the child finds `benchmarks` wherever it was run from.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=120, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.sdk_floor failed: {done.stderr.strip()[-500:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return {key: figures[key] for key in ("sdk_invocation_us", "sdk_step_us")}


def run(env: Env) -> dict[str, float]:
    fork_exit_wait, fork_call = fork_us()
    round_trip, round_trip_cpu = round_trip_us()
    return {
        "sqlite_commit_us": sqlite_commit_us(),
        "fork_us": fork_exit_wait,
        "fork_call_us": fork_call,
        "fork_parent_rss_mib": procfs.self_rss_mib(),
        "round_trip_us": round_trip,
        "round_trip_cpu_us": round_trip_cpu,
        **sdk_us(),
    }


WORKLOAD = Workload(
    id="FLOOR",
    title=(
        f"machine floor (in-process): SQLite commit x{COMMITS}, fork+exit+wait x{FORKS},"
        f" process round trip x{ROUND_TRIPS}, the SDK alone x{SDK_INVOCATIONS}"
    ),
    metrics=(
        Metric("sqlite_commit_us", "SQLite commit (WAL, NORMAL, tiny insert)", "µs"),
        Metric("fork_us", "os.fork() + _exit + waitpid", "µs"),
        Metric("fork_call_us", "os.fork() call alone (parent side)", "µs"),
        Metric("fork_parent_rss_mib", "RSS of the forking process", "MiB"),
        Metric("round_trip_us", "64 bytes to another process and back", "µs"),
        Metric("round_trip_cpu_us", "CPU of that round trip, both processes", "µs"),
        Metric("sdk_invocation_us", "the unmodified SDK's CPU per one-step invocation", "µs"),
        Metric("sdk_step_us", "the unmodified SDK's CPU per step", "µs"),
    ),
    run=run,
    budget_s=lambda o: 90.0,
    needs_server=False,
)
