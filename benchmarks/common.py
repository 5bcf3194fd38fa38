"""Driving many executions through the API: fan-out starts, completion polling, quiet waits."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from benchmarks import procfs
from benchmarks.lean import ARN_HEADER as ARN_HEADER  # the soak reads it from here
from benchmarks.spec import Env, WorkloadTimeout


def epoch(ts: datetime | float) -> float:
    return ts.timestamp() if isinstance(ts, datetime) else float(ts)


@dataclass
class Started:
    arns: list[str]
    first_s: float  # time.time() before the first request
    last_s: float  # time.time() when the last request returned
    latencies_ms: list[float]
    errors: int

    @property
    def per_s(self) -> float:
        return len(self.arns) / max(1e-9, self.last_s - self.first_s)


def start_many(
    env: Env, function: str, payloads: Sequence[dict[str, Any]], threads: int | None = None
) -> Started:
    """Asynchronous (Event) invokes from a few client threads, as fast as they go."""
    threads = threads or env.options.client_threads
    starters = env.starters(threads)
    arns: list[str | None] = [None] * len(payloads)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    bodies = [json.dumps(p).encode() for p in payloads]
    first = time.time()

    def worker(t: int) -> None:
        start = starters[t]
        for i in range(t, len(bodies), threads):
            if env.deadline.passed():
                return
            t0 = time.perf_counter()
            try:
                arns[i] = start(function, bodies[i])
            except Exception:  # counted and reported; one failure must not stop the run
                errors[t] += 1
            latencies[t].append((time.perf_counter() - t0) * 1000)

    with ThreadPoolExecutor(threads, thread_name_prefix="starter") as pool:
        list(pool.map(worker, range(threads)))
    started = Started(
        arns=[a for a in arns if a is not None],
        first_s=first,
        last_s=time.time(),
        latencies_ms=[x for per in latencies for x in per],
        errors=sum(errors),
    )
    env.partial["started_per_s"] = started.per_s
    env.partial["start_phase_s"] = started.last_s - first
    if env.deadline.passed():
        raise WorkloadTimeout(
            f"starting: {len(started.arns):,} of {len(payloads):,} started in "
            f"{started.last_s - first:.0f} s"
        )
    return started


def list_executions(
    lam: Any, function: str, started_after: float, statuses: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every execution of `function` started at or after `started_after` (epoch s)."""
    kwargs: dict[str, Any] = {
        "FunctionName": function,
        "MaxItems": 1000,
        "StartedAfter": datetime.fromtimestamp(started_after, UTC),
    }
    if statuses:
        kwargs["Statuses"] = statuses
    out: list[dict[str, Any]] = []
    while True:
        page = lam.list_durable_executions_by_function(**kwargs)
        out += page["DurableExecutions"]
        if not page.get("NextMarker"):
            return out
        kwargs["Marker"] = page["NextMarker"]


def wait_all_closed(
    env: Env, function: str, started: Started, *, poll_s: float = 0.1, expect: int | None = None
) -> list[dict[str, Any]]:
    """Poll until the run's executions have closed, then return the closed ones.

    The poll asks for one RUNNING or PAUSED item only, so it costs the server next to
    nothing; the exact completion times come from the server's EndTimestamp values,
    not from when this loop noticed. With `expect` below the number started (some are
    known to be stuck) it has to count, with full listings, less often.
    """
    lam = env.lam
    after = started.first_s - 0.001
    since = datetime.fromtimestamp(after, UTC)
    expected = len(started.arns) if expect is None else expect
    counting = expected < len(started.arns)
    while not env.deadline.passed():
        if counting:
            closed = [e for e in list_executions(lam, function, after) if "EndTimestamp" in e]
            if len(closed) >= expected:
                return closed
        else:
            page = lam.list_durable_executions_by_function(
                FunctionName=function,
                MaxItems=1,
                Statuses=["RUNNING", "PAUSED"],
                StartedAfter=since,
            )
            if not page["DurableExecutions"]:
                found = list_executions(lam, function, after)
                if len(found) >= expected:
                    return found
        pause = max(poll_s, 0.5) if counting else poll_s
        time.sleep(max(0.0, min(pause, env.deadline.remaining())))
    # Out of time: say how far it got, from one last (full) listing.
    found = list_executions(lam, function, after)
    closed = [e for e in found if "EndTimestamp" in e]
    elapsed = time.time() - started.first_s
    # Completions per second so far: what W2 calls completed/s, for a run cut short.
    env.partial["completed_per_s"] = len(closed) / elapsed
    raise WorkloadTimeout(
        f"waiting: {len(closed):,} of {expected:,} closed {elapsed:.0f} s after the first start"
    )


def closed_summary(executions: list[dict[str, Any]]) -> tuple[float, int]:
    """(latest EndTimestamp in epoch seconds, how many did not succeed)."""
    ends = [epoch(e["EndTimestamp"]) for e in executions if "EndTimestamp" in e]
    failed = sum(1 for e in executions if e["Status"] != "SUCCEEDED")
    return (max(ends) if ends else float("nan")), failed


def wait_quiet(
    env: Env, *, idle_cores: float = 0.1, hold_s: float = 0.5, limit_s: float = 60.0
) -> float:
    """Wait until the server tree uses under `idle_cores` of CPU for `hold_s`.

    Lets a workload look at the server (history sweeps) only once it has finished its
    burst of work, so the looking does not slow the work being measured. Returns the
    seconds waited.
    """
    started = time.monotonic()
    stop = min(env.deadline.end, started + limit_s)
    pid = env.srv.pid
    before = procfs.tree_cpu(pid).total_s
    quiet_since = time.monotonic()
    while time.monotonic() < stop:
        time.sleep(0.1)
        now_cpu = procfs.tree_cpu(pid).total_s
        if now_cpu - before > idle_cores * 0.1:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= hold_s:
            break
        before = now_cpu
    return time.monotonic() - started


class MemorySampler:
    """Samples the server tree's memory in the background; keeps the peak."""

    def __init__(self, env: Env, interval_s: float = 0.5) -> None:
        self._env = env
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak: procfs.TreeMemory | None = None
        self._thread = threading.Thread(target=self._loop, name="mem-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            mem = procfs.tree_memory(self._env.srv.pid)
            if self.peak is None or mem.rss_mib > self.peak.rss_mib:
                self.peak = mem
                self._env.partial["peak_rss_mib"] = mem.rss_mib
            self._stop.wait(self._interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def fan_out(
    env: Env,
    items: Sequence[Any],
    work: Callable[[Any, Any], Any],
    threads: int | None = None,
    clients: Sequence[Any] | None = None,
) -> list[Any]:
    """Apply `work(client, item)` to every item from a few client threads, in order
    (`clients`: one per thread; default boto3's).

    A failed call leaves its result None (and is counted by the caller) rather than
    ending the run: under load a platform may refuse a few requests.
    """
    threads = threads or env.options.client_threads
    clients = clients or env.clients(threads)
    results: list[Any] = [None] * len(items)

    def worker(t: int) -> None:
        for i in range(t, len(items), threads):
            if env.deadline.passed():
                return
            try:
                results[i] = work(clients[t], items[i])
            except Exception:
                results[i] = None

    with ThreadPoolExecutor(threads, thread_name_prefix="fan-out") as pool:
        list(pool.map(worker, range(threads)))
    return results
