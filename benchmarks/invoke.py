"""C1: cold start of a new function, and what the platform adds to a warm invoke.

Plain (non-durable) functions, synchronous `Invoke` through boto3. Cold: the first
invoke of a function created just before (a fork from the zygote plus the handler's
import, unless the platform did those as the function was created). Its control: after
each cold sample another function is created and the warm function invoked, so that
`cold - control` is what the first invoke of a new version adds under the same
conditions (a warm invoke right after a CreateFunction is slower than one back to
back: caches, idle cores). Warm: a trivial handler invoked back to back; the handler
reports its own time, which is subtracted. The HTTP floor (a keep-alive GET of
/v1/health, no SigV4, no sandbox) shows how much of a warm invoke is HTTP and the
client.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

from benchmarks import handlers
from benchmarks.server import deploy
from benchmarks.spec import Env, Metric, Workload, median, percentile

COLD_SAMPLES = 8
WARM_SAMPLES = 300
WARMUP = 30
WARM_FN = "c1-warm"


def _invoke(lam: Any, name: str) -> tuple[float, float, dict[str, Any]]:
    """(latency ms, CPU ms this client thread spent in boto3, the handler's answer)."""
    t0, cpu0 = time.perf_counter(), time.thread_time()
    resp = lam.invoke(FunctionName=name, Payload=b"{}")
    body = resp["Payload"].read()
    elapsed_ms = (time.perf_counter() - t0) * 1000
    client_ms = (time.thread_time() - cpu0) * 1000
    if resp.get("FunctionError"):
        raise RuntimeError(f"{name} failed: {body[:300]!r}")
    return elapsed_ms, client_ms, json.loads(body)


def setup(env: Env) -> None:
    deploy(env.lam, WARM_FN, handlers.FILES, handlers.handler("plain"), durable=False)
    for _ in range(WARMUP):
        _invoke(env.lam, WARM_FN)
    env.state["seq"] = 0


def _http_floor_ms(url: str, n: int) -> float:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    samples = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", "/v1/health")
            conn.getresponse().read()
            samples.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()
    return median(samples)


def run(env: Env) -> dict[str, float]:
    lam = env.lam
    cold, control, create = [], [], []
    for _ in range(COLD_SAMPLES):
        env.deadline.check("cold starts")
        env.state["seq"] += 1
        name = f"c1-cold-{env.state['seq']}"
        t0 = time.perf_counter()
        deploy(lam, name, handlers.FILES, handlers.handler("plain"), durable=False)
        create.append((time.perf_counter() - t0) * 1000)
        cold.append(_invoke(lam, name)[0])
        deploy(lam, f"{name}-control", handlers.FILES, handlers.handler("plain"), durable=False)
        control.append(_invoke(lam, WARM_FN)[0])
    raw, added = [], []
    client, server = [], []
    for _ in range(WARM_SAMPLES):
        elapsed, client_ms, body = _invoke(lam, WARM_FN)
        raw.append(elapsed)
        added.append(elapsed - float(body["own_ms"]))
        client.append(client_ms)
        server.append(elapsed - float(body["own_ms"]) - client_ms)
    env.deadline.check("warm invokes")
    return {
        "cold_p50_ms": median(cold),
        "cold_max_ms": max(cold),
        "cold_added_ms": median(cold) - median(control),
        "control_p50_ms": median(control),
        "create_p50_ms": median(create),
        "warm_added_ms": median(added),
        "warm_p50_ms": median(raw),
        "warm_p99_ms": percentile(raw, 99),
        "warm_client_cpu_ms": median(client),
        "warm_beyond_client_ms": median(server),
        "http_floor_ms": _http_floor_ms(env.srv.url, WARM_SAMPLES),
    }


WORKLOAD = Workload(
    id="C1",
    title=f"cold start (first invoke of a new plain function, x{COLD_SAMPLES}) and warm "
    f"invoke overhead (x{WARM_SAMPLES})",
    metrics=(
        Metric("cold_p50_ms", "cold start p50", "ms", target=10),
        Metric("cold_max_ms", "cold start max", "ms"),
        Metric(
            "cold_added_ms",
            "cold start added: p50 cold - p50 warm invoke right after a create",
            "ms",
            target=1,
        ),
        Metric("control_p50_ms", "warm invoke right after a create p50 (the control)", "ms"),
        Metric(
            "create_p50_ms", "CreateFunction p50 (the new version's Init, when run ahead)", "ms"
        ),
        Metric("warm_added_ms", "warm: platform's added cost (p50 of latency - own)", "ms", 0.5),
        Metric("warm_p50_ms", "warm: raw invoke latency p50", "ms"),
        Metric("warm_p99_ms", "warm: raw invoke latency p99", "ms"),
        Metric("warm_client_cpu_ms", "warm: boto3 client CPU per invoke (p50)", "ms"),
        Metric("warm_beyond_client_ms", "warm: latency - own - client CPU (p50)", "ms"),
        Metric("http_floor_ms", "HTTP floor: GET /v1/health p50 (keep-alive)", "ms"),
    ),
    run=run,
    setup=setup,
    budget_s=lambda o: 60.0,
)
