"""F1: what a facet query costs tenant code, measured inside a deployed function.

    .venv/bin/python -m benchmarks.facets [--queries 20000] [--rows 10000]

A `treadle dev` server in a subprocess (as `benchmarks.run` starts it); a function
opens a facet with `treadle_facets.connect`, fills it, then times each statement with
`perf_counter_ns` in the handler: a point SELECT by primary key, a range SELECT of 10
rows, an INSERT committed in its own transaction, and `connect` itself (one call to the
platform over the worker's channel, then the file). Prints p50/p99 in µs.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.server import BenchServer, client, deploy

HANDLER = """
import time
from treadle_facets import connect

def _pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] / 1000

def handler(event, context):
    n, rows = event["queries"], event["rows"]
    opens = []
    for _ in range(50):
        t = time.perf_counter_ns(); db = connect("bench"); opens.append(time.perf_counter_ns() - t)
        db.close()
    db = connect("bench")
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v TEXT)")
        db.execute("DELETE FROM kv")
        db.executemany("INSERT INTO kv VALUES (?, ?)", ((i, "v" * 100) for i in range(rows)))
    out = {"connect": opens}
    point, scan, insert = [], [], []
    for i in range(n):
        k = (i * 7919) % rows
        t = time.perf_counter_ns()
        db.execute("SELECT v FROM kv WHERE k = ?", (k,)).fetchone()
        point.append(time.perf_counter_ns() - t)
        t = time.perf_counter_ns()
        db.execute("SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT 10", (k,)).fetchall()
        scan.append(time.perf_counter_ns() - t)
    for i in range(min(n, 5000)):
        t = time.perf_counter_ns()
        with db:
            db.execute("INSERT INTO kv VALUES (?, ?)", (rows + i, "w" * 100))
        insert.append(time.perf_counter_ns() - t)
    out.update(point=point, range10=scan, insert_commit=insert)
    pct = lambda v: {"p50_us": _pct(v, 0.5), "p99_us": _pct(v, 0.99), "n": len(v)}
    return {k: pct(v) for k, v in out.items()}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with BenchServer() as srv:
        lam = client(srv)
        deploy(lam, "facet-bench", {"handler.py": HANDLER}, "handler.handler", durable=False)
        event = {"queries": args.queries, "rows": args.rows}
        lam.invoke(FunctionName="facet-bench", Payload=json.dumps({**event, "queries": 100}))
        resp = lam.invoke(FunctionName="facet-bench", Payload=json.dumps(event))
        result = json.loads(resp["Payload"].read())
    if "FunctionError" in resp:
        raise SystemExit(f"the benchmark function failed: {result}")
    print(f"F1 facet queries from tenant code ({args.rows} rows, {args.queries} queries)")
    print(f"{'statement':<16}{'p50 µs':>10}{'p99 µs':>10}{'n':>8}")
    for name, figures in result.items():
        print(f"{name:<16}{figures['p50_us']:>10.1f}{figures['p99_us']:>10.1f}{figures['n']:>8}")


if __name__ == "__main__":
    main()
