"""Usage at scale: `ExecutionStore.usage` and a new start with 1,000,000 recorded
executions of one tenant, against the same with none (docs/operating.md).

Not a workload of `benchmarks.run`: the executions are generated directly in the
embedded store's SQLite file (one bulk INSERT per 50,000 rows, through the same
triggers that keep the usage counters, so the counters are what a million real starts
would have left), then the store is timed in process:

- usage: `usage(tenant, now)` (what `GET /v1/tenants/{id}/usage` reads for executions),
  p50/p99 over `--reads` calls; target p99 < 5 ms;
- start: what a start costs the store: the running-quota read (`count_running`) and
  the creation commit (record, EXECUTION operation, first event) in one transaction,
  p50/p99 over `--starts` starts, with N recorded executions and with 0.

    .venv/bin/python -m benchmarks.usage                 # 1,000,000 (~1-2 min to fill)
    .venv/bin/python -m benchmarks.usage --count 100000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.spec import percentile
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.domain.models import (
    Event,
    Execution,
    ExecutionDetails,
    ExecutionStatus,
    Operation,
    OperationStatus,
    OperationType,
)
from treadle.domain.ports import Commit, StoredOperation

TENANT = "123456789012"
FUNCTION = "orders"
BATCH = 50_000
WARM_UP = 20
START_MS = 1_764_000_000_000
# Of the recorded executions: most closed, some running (as a busy tenant's would be).
STATUS_MIX = (
    (ExecutionStatus.SUCCEEDED, 90),
    (ExecutionStatus.FAILED, 5),
    (ExecutionStatus.RUNNING, 5),
)


def _execution(name: str, start_ms: int, status: ExecutionStatus) -> Execution:
    return Execution(
        arn=f"arn:aws:lambda:us-east-1:{TENANT}:function:{FUNCTION}:$LATEST"
        f"/durable-execution/{name}/{name}",
        tenant=TENANT,
        function_name=FUNCTION,
        version="$LATEST",
        name=name,
        exec_id=name,
        status=status,
        input_payload='{"order": 1}',
        input_hash="h",
        start_ms=start_ms,
        execution_timeout_s=3600,
        retention_days=30,
    )


def fill(db: Database, count: int) -> float:
    """`count` executions of one tenant, bulk inserted; seconds taken."""
    started = time.perf_counter()
    template = _execution("NAME", START_MS, ExecutionStatus.SUCCEEDED).model_dump_json()
    statuses = [s for s, share in STATUS_MIX for _ in range(share)]
    for first in range(0, count, BATCH):
        rows = []
        for i in range(first, min(count, first + BATCH)):
            name = f"e{i:08d}"
            status = statuses[i % len(statuses)]
            start_ms = START_MS + i * 10
            record = template.replace("NAME", name).replace('"SUCCEEDED"', f'"{status.value}"')
            arn = f"arn:aws:lambda:us-east-1:{TENANT}:function:{FUNCTION}:$LATEST" + (
                f"/durable-execution/{name}/{name}"
            )
            rows.append((arn, TENANT, FUNCTION, name, "$LATEST", status.value, start_ms, record))
        with db.write() as conn:
            conn.executemany(
                "INSERT INTO executions (arn, tenant, function_name, name, version, status,"
                " start_ms, invocation_active, version_seq, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0, 1, ?)",
                rows,
            )
    return time.perf_counter() - started


def _timed(calls: int, call: Callable[[int], object]) -> tuple[float, float]:
    """(p50, p99) in milliseconds, after a few untimed calls (caches, first writes)."""
    for i in range(WARM_UP):
        call(calls + i)
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - t0) * 1000)
    return percentile(times, 50), percentile(times, 99)


def _start(store: SqliteExecutionStore, i: int, now_ms: int) -> None:
    ex = _execution(f"new{i:06d}", now_ms + i, ExecutionStatus.RUNNING)
    root = Operation(
        Id=ex.exec_id,
        Type=OperationType.EXECUTION,
        StartTimestamp=ex.start_ms,
        Status=OperationStatus.STARTED,
        ExecutionDetails=ExecutionDetails(InputPayload=ex.input_payload),
    )
    event = Event.model_validate(
        {
            "EventType": "ExecutionStarted",
            "EventId": 1,
            "Id": ex.exec_id,
            "EventTimestamp": ex.start_ms,
            "ExecutionStartedDetails": {"Input": {"Payload": ex.input_payload}},
        }
    )
    store.count_running(TENANT)  # the running quota's read, as a start makes it
    store.create(
        Commit(
            execution=ex,
            operations=[StoredOperation(op=root, create_seq=1, change_seq=1)],
            events=[event],
        )
    )


def measure(directory: Path, count: int, reads: int, starts: int) -> dict[str, float]:
    db = Database(directory / "treadle.db")
    try:
        fill_s = fill(db, count) if count else 0.0
        store = SqliteExecutionStore(db)
        now = START_MS + count * 10 + 1_000
        counts = store.usage(TENANT, now)
        assert sum(counts.by_status.values()) == count, counts
        usage = _timed(reads, lambda _: store.usage(TENANT, now))
        start = _timed(starts, lambda i: _start(store, i, now))
        return {
            "executions": count,
            "fill_s": fill_s,
            "usage_p50_ms": usage[0],
            "usage_p99_ms": usage[1],
            "start_p50_ms": start[0],
            "start_p99_ms": start[1],
        }
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--reads", type=int, default=2_000)
    parser.add_argument("--starts", type=int, default=1_000)
    args = parser.parse_args()
    results = []
    for count in (0, args.count):
        with tempfile.TemporaryDirectory(prefix="treadle-usage-bench-") as tmp:
            results.append(measure(Path(tmp), count, args.reads, args.starts))
    print(f"{'executions':>12} {'fill s':>8} {'usage p50':>10} {'usage p99':>10}"
          f" {'start p50':>10} {'start p99':>10}  (ms)")  # fmt: skip
    for r in results:
        print(
            f"{r['executions']:>12,.0f} {r['fill_s']:>8.1f} {r['usage_p50_ms']:>10.3f}"
            f" {r['usage_p99_ms']:>10.3f} {r['start_p50_ms']:>10.3f} {r['start_p99_ms']:>10.3f}"
        )
    empty, full = results
    ratio = full["start_p50_ms"] / empty["start_p50_ms"]
    verdict = "met" if full["usage_p99_ms"] < 5 else "NOT met"
    print(f"usage p99 < 5 ms: {verdict}; start p50 with {args.count:,} / with 0: {ratio:.2f}")


if __name__ == "__main__":
    main()
