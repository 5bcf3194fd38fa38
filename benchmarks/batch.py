"""W2b: start executions of a one-step function through batch starts (100 per call).

`POST /v1/functions/{name}/executions:batch` from a few client threads of one process,
HTTP Basic with the tenant's key (what a script would use; SigV4 works too). Completion
is read back as in W2, from the server's own EndTimestamp of the last execution.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from benchmarks import handlers, throughput
from benchmarks.common import Started, wait_all_closed
from benchmarks.server import BenchServer, deploy
from benchmarks.spec import Env, Metric, Workload, WorkloadTimeout
from treadle.tenancy.credentials import read_profile

FUNCTION = "w2b-one-step"
BATCH = 100


def _http(srv: BenchServer) -> httpx.Client:
    found = read_profile(srv.data_dir / "credentials", "treadle")
    if found is None:
        raise RuntimeError(f"no credentials in {srv.data_dir}: is the server started?")
    auth = (found["aws_access_key_id"], found["aws_secret_access_key"])
    return httpx.Client(base_url=srv.url, auth=auth, timeout=120)


def start_batches(env: Env, count: int, prefix: str) -> Started:
    threads = env.options.client_threads
    batches = [list(range(i, min(count, i + BATCH))) for i in range(0, count, BATCH)]
    arns: list[list[str]] = [[] for _ in batches]
    latencies: list[float] = []
    errors = [0] * len(batches)
    first = time.time()

    def worker(t: int) -> None:
        with _http(env.srv) as http:
            for b in range(t, len(batches), threads):
                if env.deadline.passed():
                    return
                body: dict[str, Any] = {
                    "executions": [{"name": f"{prefix}-{i}", "input": {}} for i in batches[b]]
                }
                t0 = time.perf_counter()
                try:
                    out = http.post(f"/v1/functions/{FUNCTION}/executions:batch", json=body)
                    out.raise_for_status()
                    results = out.json()["results"]
                    arns[b] = [r["executionArn"] for r in results if "executionArn" in r]
                    errors[b] = len(results) - len(arns[b])
                except Exception:  # counted and reported; one failure must not stop the run
                    errors[b] = len(batches[b])
                latencies.append((time.perf_counter() - t0) * 1000)

    with ThreadPoolExecutor(threads, thread_name_prefix="batcher") as pool:
        list(pool.map(worker, range(threads)))
    started = Started(
        arns=[a for per in arns for a in per],
        first_s=first,
        last_s=time.time(),
        latencies_ms=latencies,
        errors=sum(errors),
    )
    env.partial["started_per_s"] = started.per_s
    if env.deadline.passed():
        raise WorkloadTimeout(f"starting: {len(started.arns):,} of {count:,} started")
    return started


def setup(env: Env) -> None:
    deploy(env.lam, FUNCTION, handlers.FILES, handlers.handler("one_step"))
    wait_all_closed(env, FUNCTION, start_batches(env, 2 * BATCH, "warm"))
    env.state["w2b_round"] = 0


def run(env: Env) -> dict[str, float]:
    n = env.options.w2b_count
    env.state["w2b_round"] += 1
    prefix = f"r{env.state['w2b_round']}"
    figures = throughput.measure(env, FUNCTION, n, lambda: start_batches(env, n, prefix))
    figures["batch_p50_ms"] = figures.pop("start_p50_ms")  # one call starts 100
    return figures


WORKLOAD = Workload(
    id="W2b",
    title="start {w2b_count} executions of a one-step function by batch starts of 100 "
    "({client_threads} client threads)",
    metrics=(
        Metric("completed_per_s", "completed", "/s", target=1500, higher_is_better=True),
        Metric("started_per_s", "started (client side)", "/s"),
        Metric("batch_p50_ms", "batch start call latency p50", "ms"),
        Metric("cpu_ms_per_execution", "CPU per execution, server + children", "ms"),
        Metric("pids_allocated", "pids allocated per run (processes + threads)", ""),
        Metric("errors", "failed starts + executions not SUCCEEDED", ""),
    ),
    run=run,
    setup=setup,
    budget_s=lambda o: 90.0 + o.w2b_count / 100,
)
