"""W1: one execution of 20 trivial sequential steps, invoked synchronously.

Wall time per step is the end-to-end cost of a durable step as a tenant sees it (SDK
checkpoint round trip, engine, SQLite commit); CPU per step, read from /proc for the
server and for its whole tree (zygote + sandbox workers), shows where the time goes.
"""

from __future__ import annotations

import json
import time

from benchmarks import handlers, procfs
from benchmarks.server import deploy
from benchmarks.spec import Env, Metric, Workload, median

STEPS = 20
# Executions per run: /proc counts CPU in 10 ms ticks per process, too coarse for one.
PER_RUN = 5
FUNCTION = "w1-steps"
_EXPECTED = sum(range(STEPS))


def _execute(env: Env) -> float:
    t0 = time.perf_counter()
    resp = env.lam.invoke(FunctionName=FUNCTION, Payload=json.dumps({"n": STEPS}).encode())
    elapsed = time.perf_counter() - t0
    body = json.loads(resp["Payload"].read())
    if resp.get("FunctionError") or body != _EXPECTED:
        raise RuntimeError(f"W1 execution returned {body!r}")
    return elapsed


def setup(env: Env) -> None:
    deploy(env.lam, FUNCTION, handlers.FILES, handlers.handler("steps"))
    # The first execution forks and imports a worker: that is C1's subject, not W1's.
    for _ in range(2):
        _execute(env)


def run(env: Env) -> dict[str, float]:
    before, pid_before = procfs.tree_cpu(env.srv.pid), procfs.last_pid()
    walls = [_execute(env) for _ in range(PER_RUN)]
    used, pid_after = procfs.tree_cpu(env.srv.pid) - before, procfs.last_pid()
    steps = PER_RUN * STEPS
    return {
        "ms_per_step": median(walls) * 1000 / STEPS,
        "cpu_ms_per_step": used.total_s * 1000 / steps,
        "server_cpu_ms_per_step": used.server_s * 1000 / steps,
        "wall_ms": median(walls) * 1000,
        "pids_allocated": procfs.pids_between(pid_before, pid_after) / PER_RUN,
    }


WORKLOAD = Workload(
    id="W1",
    title=f"one execution of {STEPS} trivial sequential steps (sync invoke; {PER_RUN} per run)",
    metrics=(
        Metric("ms_per_step", "wall per step", "ms", target=0.6),
        Metric("cpu_ms_per_step", "CPU per step, server + children", "ms"),
        Metric("server_cpu_ms_per_step", "CPU per step, server process only", "ms"),
        Metric("wall_ms", "wall per execution", "ms"),
        Metric("pids_allocated", "pids allocated per execution (processes + threads)", ""),
    ),
    run=run,
    setup=setup,
    budget_s=lambda o: 40.0,
)
