"""W2: start executions of a one-step function as fast as one client can, then count them.

Starts are asynchronous invokes (`InvocationType=Event`) from a few client threads of
one process; completion is read back with ListDurableExecutionsByFunction, and the
completion rate uses the server's own EndTimestamp of the last execution.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import handlers, procfs
from benchmarks.common import Started, closed_summary, start_many, wait_all_closed
from benchmarks.server import deploy
from benchmarks.spec import Env, Metric, Workload, median

FUNCTION = "w2-one-step"


def setup(env: Env) -> None:
    deploy(env.lam, FUNCTION, handlers.FILES, handlers.handler("one_step"))
    wait_all_closed(env, FUNCTION, start_many(env, FUNCTION, [{}] * 20))


def run(env: Env) -> dict[str, float]:
    n = env.options.w2_count
    return measure(env, FUNCTION, n, lambda: start_many(env, FUNCTION, [{}] * n))


def measure(env: Env, function: str, n: int, start: Callable[[], Started]) -> dict[str, float]:
    """Start `n` executions of `function` with `start`, wait for all, and the W2 figures
    (W2b starts them by batch)."""
    cpu0, pid0 = procfs.tree_cpu(env.srv.pid), procfs.last_pid()
    started = start()
    done = wait_all_closed(env, function, started)
    cpu, pid1 = procfs.tree_cpu(env.srv.pid) - cpu0, procfs.last_pid()
    last_end, not_succeeded = closed_summary(done)
    return {
        "started_per_s": started.per_s,
        "completed_per_s": len(done) / (last_end - started.first_s),
        "start_p50_ms": median(started.latencies_ms),
        "cpu_ms_per_execution": cpu.total_s * 1000 / max(1, len(done)),
        "pids_allocated": float(procfs.pids_between(pid0, pid1)),
        "errors": float(started.errors + not_succeeded + (n - len(done))),
    }


WORKLOAD = Workload(
    id="W2",
    title="start {w2_count} executions of a one-step function as fast as one client can "
    "(async Event, {client_threads} client threads)",
    metrics=(
        Metric("completed_per_s", "completed", "/s", target=600, higher_is_better=True),
        Metric("started_per_s", "started (client side)", "/s"),
        Metric("start_p50_ms", "async invoke latency p50", "ms"),
        Metric("cpu_ms_per_execution", "CPU per execution, server + children", "ms"),
        Metric("pids_allocated", "pids allocated per run (processes + threads)", ""),
        Metric("errors", "failed starts + executions not SUCCEEDED", ""),
    ),
    run=run,
    setup=setup,
    budget_s=lambda o: 75.0,
)
