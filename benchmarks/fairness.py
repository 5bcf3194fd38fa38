"""Fairness (issue 14, point 5): tenant B's first start while tenant A has a backlog of
queued starts, against the same with no backlog (benchmarks/README.md).

Not a workload of `benchmarks.run`: A's QUEUED executions are generated directly in the
embedded store's SQLite file (bulk INSERTs through the same triggers that keep the
queue's counters, so the store is what that many queued starts would have left), then
B's start is timed in process on the real start path: the quota admission
(`TenantQuotas.admit_start`: the queue and running counters, the rate bucket) and the
engine's start (`Engine.start`: the creation commit). Each sample is the first start of
a fresh tenant B, p50/p99 over `--starts` of them.

    .venv/bin/python -m benchmarks.fairness                    # 100,000 queued (~10 s)
    .venv/bin/python -m benchmarks.fairness --backlog 10000 --starts 50
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.spec import percentile
from treadle.adapters.local.basics import RandomIds, SystemClock
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.start_queue import SqliteStartQueue
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.app.quotas import TenantQuotas
from treadle.domain.engine import Engine, TokenCodec
from treadle.domain.models import DurableConfig, Execution, ExecutionStatus
from treadle.domain.ports import FunctionVersion, InvocationOutcome, Timer
from treadle.domain.start_queue import StartQueue
from treadle.tenancy.admin import TenantAdmin
from treadle.tenancy.models import Quotas

FUNCTION = "orders"
BATCH = 50_000
START_MS = 1_764_000_000_000
WARM_UP = 10


class _Idle:
    """Dispatcher, completion listener and runtime of an engine nobody drives: the
    timers a start writes stay rows, no invocation runs (only the start is measured)."""

    def dispatch(self, timers: Sequence[Timer], now_ms: int) -> list[Timer]:
        return []

    def execution_closed(self, arn: str) -> None:
        return None

    def invoke(self, fn: FunctionVersion, payload: bytes, request_id: str) -> InvocationOutcome:
        raise AssertionError("the fairness benchmark runs no invocation")


@dataclass
class World:
    """The embedded store and the start path over it, in one directory."""

    db: Database
    tenants: SqliteTenantStore
    admin: TenantAdmin
    store: SqliteExecutionStore
    functions: SqliteFunctionStore
    queue: StartQueue
    quotas: TenantQuotas
    engine: Engine

    @classmethod
    def open(
        cls, directory: Path, wrap: Callable[[SqliteStartQueue], StartQueue] | None = None
    ) -> World:
        """`wrap`: what the start path sees of the start queue (a test records calls)."""
        db = Database(directory / "treadle.db")
        tenants = SqliteTenantStore(directory / "tenants.sqlite")
        clock = SystemClock()
        admin = TenantAdmin(tenants, clock)
        store = SqliteExecutionStore(db)
        functions = SqliteFunctionStore(db)
        queue = SqliteStartQueue(db) if wrap is None else wrap(SqliteStartQueue(db))
        quotas = TenantQuotas(admin, executions=store, functions=functions, queue=queue)
        idle = _Idle()
        engine = Engine(
            store=store,
            functions=functions,
            runtime=idle,
            clock=clock,
            ids=RandomIds(),
            tokens=TokenCodec(b"k" * 32),
            dispatcher=idle,
            listener=idle,
        )
        return cls(db, tenants, admin, store, functions, queue, quotas, engine)

    def close(self) -> None:
        self.tenants.close()
        self.db.close()

    def tenant(self, name: str, quotas: Quotas | None = None) -> FunctionVersion:
        """A new tenant with one durable function."""
        tenant, _ = self.admin.create_tenant(name, quotas=quotas)
        account = tenant.account_id
        fn = FunctionVersion(
            tenant=account,
            function_name=FUNCTION,
            version="$LATEST",
            function_arn=f"arn:aws:lambda:us-east-1:{account}:function:{FUNCTION}",
            handler="handler.handler",
            durable_config=DurableConfig(ExecutionTimeout=3600),
            code_sha256="x",
            code_size=1,
            code_key="k",
            last_modified_ms=0,
            revision_id="r",
        )
        self.functions.put_latest(fn, create=True)
        return fn

    def start(self, fn: FunctionVersion, name: str) -> Execution:
        """The start path of `Invoke` for a durable function, as the API runs it."""
        limits, queued = self.quotas.admit_start(fn.tenant)
        ex, _ = self.engine.start(fn, name, "{}", limits=limits, queued=queued)
        return ex


def fill_queue(db: Database, tenant: str, count: int) -> float:
    """`count` QUEUED executions of `tenant`, bulk inserted; seconds taken."""
    started = time.perf_counter()
    base = f"arn:aws:lambda:us-east-1:{tenant}:function:{FUNCTION}:$LATEST/durable-execution"
    template = Execution(
        arn=f"{base}/NAME/NAME",
        tenant=tenant,
        function_name=FUNCTION,
        version="$LATEST",
        name="NAME",
        exec_id="NAME",
        status=ExecutionStatus.QUEUED,
        input_payload="{}",
        input_hash="h",
        start_ms=START_MS,
        execution_timeout_s=3600,
        retention_days=1,
    ).model_dump_json()
    for first in range(0, count, BATCH):
        rows = []
        for i in range(first, min(count, first + BATCH)):
            name = f"q{i:08d}"
            record = template.replace("NAME", name)
            rows.append((f"{base}/{name}/{name}", tenant, name, START_MS + i, record))
        with db.write() as conn:
            conn.executemany(
                "INSERT INTO executions (arn, tenant, function_name, name, version, status,"
                " start_ms, invocation_active, version_seq, record)"
                f" VALUES (?, ?, '{FUNCTION}', ?, '$LATEST', 'QUEUED', ?, 0, 1, ?)",
                rows,
            )
    # Checkpoint the bulk load's WAL now: left there, the first start after it would pay
    # for moving every page of it, a cost of the bulk load, not of the backlog.
    with db.file.locked() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


def backlogged(world: World, backlog: int) -> tuple[FunctionVersion, float]:
    """Tenant A, at its running limit (one busy execution), with `backlog` queued."""
    a = world.tenant("a", Quotas(max_running_executions=1, max_queued=max(backlog, 1) * 2))
    busy = world.start(a, "busy")
    assert busy.status is ExecutionStatus.RUNNING, busy.status
    return a, fill_queue(world.db, a.tenant, backlog)


def measure(directory: Path, backlog: int, starts: int) -> dict[str, float]:
    world = World.open(directory)
    try:
        a, fill_s = backlogged(world, backlog)
        assert world.queue.count_queued(a.tenant) == backlog
        # The tenants of the samples exist before timing: creating one is not a start.
        bs = [world.tenant(f"b{i}") for i in range(WARM_UP + starts)]
        for i, b in enumerate(bs[:WARM_UP]):  # caches, the first writes of the WAL
            world.start(b, f"warm{i}")
        times = []
        for i, b in enumerate(bs[WARM_UP:]):
            t0 = time.perf_counter()
            ex = world.start(b, f"first{i}")
            times.append((time.perf_counter() - t0) * 1000)
            assert ex.status is ExecutionStatus.RUNNING, ex.status
        # A's backlog is as it was: B's starts neither joined nor moved it.
        assert world.queue.count_queued(a.tenant) == backlog
        return {
            "backlog": backlog,
            "fill_s": fill_s,
            "start_p50_ms": percentile(times, 50),
            "start_p90_ms": percentile(times, 90),
            "start_p99_ms": percentile(times, 99),
        }
    finally:
        world.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--starts", type=int, default=200)
    args = parser.parse_args()
    results = []
    for backlog in (0, args.backlog):
        with tempfile.TemporaryDirectory(prefix="treadle-fairness-bench-") as tmp:
            results.append(measure(Path(tmp), backlog, args.starts))
    print(f"{'A queued':>10} {'fill s':>7} {'B first start p50':>18} {'p90':>8} {'p99':>8}  (ms)")
    for r in results:
        print(
            f"{r['backlog']:>10,.0f} {r['fill_s']:>7.1f} {r['start_p50_ms']:>18.3f}"
            f" {r['start_p90_ms']:>8.3f} {r['start_p99_ms']:>8.3f}"
        )
    empty, full = results
    for p in ("p50", "p99"):
        delay = full[f"start_{p}_ms"] - empty[f"start_{p}_ms"]
        print(f"B's first start {p}, with {args.backlog:,} of A's queued minus with 0:"
              f" {delay:+.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
