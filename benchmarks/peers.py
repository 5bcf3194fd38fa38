"""Treadle beside its strongest peers, measured one after the other in one run.

    make bench-peers                       # install peers, run them, run Treadle, print the table
    python -m benchmarks.peers --peers dbos restate --runs 1
    python -m benchmarks.peers --from-dir /tmp/treadle-peers-1234   # re-print a past run

The peers come from the harness in `../shared/peers` (`--harness` or `TREADLE_PEERS_DIR`):
its `setup.sh` installs them into venvs (`PEERS_PREFIX`, default /tmp/peers), its
`run_all.sh` runs them and appends one JSON line per run. DBOS on PostgreSQL needs a local
PostgreSQL (`apt-get install -y postgresql`); without one it is skipped and said so.
Treadle's own workloads then run through `benchmarks.run`. The table gives, per
workload, Treadle's median, the best peer's, and the ratio Treadle / best peer
(oriented so that > 1 means Treadle is ahead).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


@dataclass(frozen=True)
class Row:
    label: str
    treadle: tuple[str, str]  # (workload id, metric key) in benchmarks.run's JSON
    peer_key: str  # the key in the harness's JSON lines
    higher_is_better: bool
    unit: str


ROWS = (
    Row("W1 ms/step", ("W1", "ms_per_step"), "w1_per_step_ms", False, "ms"),
    Row("W2 completed/s", ("W2", "completed_per_s"), "w2_completed_per_s", True, "/s"),
    # No peer has a batch start: W2b is set beside the peers' best W2.
    Row("W2b completed/s (peer: W2)", ("W2b", "completed_per_s"), "w2_completed_per_s", True, "/s"),
    Row("W3s first start -> all done", ("W3s", "all_done_s"), "w3s_done_s", False, "s"),
    Row("W3e first start -> all parked", ("W3e", "park_s"), "w3e_all_waiting_s", False, "s"),
    Row("W3e wake -> all done", ("W3e", "complete_s"), "w3e_done_after_wake_s", False, "s"),
)
DEFAULT_PEERS = ("dbos", "dbos-pg", "restate")
PG_URL = "postgresql://postgres:dbos@127.0.0.1:5439/dbos_peerbench"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    p.add_argument(
        "--harness",
        type=Path,
        default=Path(os.environ.get("TREADLE_PEERS_DIR", "../shared/peers")),
        help="the peers harness directory (default: $TREADLE_PEERS_DIR or ../shared/peers)",
    )
    p.add_argument("--peers", nargs="+", default=list(DEFAULT_PEERS), help="harness peers to run")
    p.add_argument("--runs", type=int, default=3, help="Treadle runs per workload (median)")
    p.add_argument(
        "--processes", type=int, default=2, help="Treadle's server processes (one per core here)"
    )
    p.add_argument("--out", type=Path, default=None, help="results directory (default: new)")
    p.add_argument("--from-dir", type=Path, default=None, help="only print a past run's table")
    p.add_argument("--skip-setup", action="store_true", help="peers are installed already")
    return p.parse_args(argv)


def _sh(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> int:
    console.print(f"[bold]$ {' '.join(cmd)}[/bold]  (log: {log})")
    with log.open("a") as out:
        return subprocess.call(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def run_peers(args: argparse.Namespace, out: Path) -> list[str]:
    """Install and run the peers; the notes say what was skipped and why."""
    harness = args.harness.resolve()
    if not (harness / "run_all.sh").is_file():
        raise SystemExit(f"no peers harness at {harness}: pass --harness or TREADLE_PEERS_DIR")
    env = {**os.environ, "PEERS_OUT": str(out), "PEERS_RESULTS": str(out / "peers.jsonl")}
    log, notes, peers = out / "peers.log", [], list(args.peers)
    if not args.skip_setup and _sh(["bash", "setup.sh"], harness, env, log) != 0:
        raise SystemExit(f"installing the peers failed: see {log}")
    postgres = False
    if "dbos-pg" in peers:
        postgres = _sh(["bash", "pg_setup.sh", "start"], harness, env, log) == 0
        if not postgres:
            peers.remove("dbos-pg")
            notes.append("DBOS on PostgreSQL skipped: no PostgreSQL (apt-get install postgresql)")
        env["DBOS_PG_URL"] = PG_URL
    try:
        if peers and _sh(["bash", "run_all.sh", *peers], harness, env, log) != 0:
            notes.append(f"run_all.sh failed: see {log}")
    finally:
        if postgres:
            _sh(["bash", "pg_setup.sh", "stop"], harness, env, log)
    return notes


def run_treadle(args: argparse.Namespace, out: Path) -> None:
    only = ",".join(sorted({r.treadle[0] for r in ROWS}))
    cmd = [sys.executable, "-m", "benchmarks.run", "--only", only, "--runs", str(args.runs)]
    cmd += ["--processes", str(args.processes)]
    cmd += ["--json", str(out / "treadle.json")]
    console.print(f"[bold]$ {' '.join(cmd)}[/bold]")
    if subprocess.call(cmd) != 0:
        raise SystemExit("the Treadle benchmarks failed")


def _peer_names(harness: Path) -> Any:
    """The harness's own names for a configuration (`summarize.config`)."""
    path = harness / "summarize.py"
    spec = importlib.util.spec_from_file_location("peers_summarize", path)
    if not path.is_file() or spec is None or spec.loader is None:
        return lambda r: str(r.get("peer"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.config


def peer_medians(path: Path, harness: Path) -> dict[str, dict[str, float]]:
    name_of = _peer_names(harness)
    found: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in path.read_text().splitlines() if path.exists() else []:
        r = json.loads(line)
        if r.get("peer") == "floor":
            continue
        for key, value in r.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[name_of(r)][key].append(float(value))
    return {n: {k: statistics.median(v) for k, v in m.items()} for n, m in found.items()}


def treadle_medians(path: Path) -> dict[tuple[str, str], float]:
    data = json.loads(path.read_text()) if path.exists() else {"workloads": {}}
    out = {}
    for wid, wl in data["workloads"].items():
        for key, metric in wl.get("metrics", {}).items():
            if metric.get("median") is not None:
                out[(wid, key)] = float(metric["median"])
    return out


def table(out: Path, harness: Path, notes: list[str]) -> tuple[Table, list[str]]:
    peers = peer_medians(out / "peers.jsonl", harness)
    ours = treadle_medians(out / "treadle.json")
    t = Table(title="Treadle beside its strongest peers (medians, one run after the other)")
    for col in ("workload", "Treadle", "best peer", "peer figure", "Treadle / best peer"):
        t.add_column(col, justify="left" if col in ("workload", "best peer") else "right")
    lines = ["| workload | Treadle | best peer | peer | Treadle / best peer |", "|---" * 5 + "|"]
    for row in ROWS:
        mine = ours.get(row.treadle)
        theirs = [(m[row.peer_key], n) for n, m in peers.items() if row.peer_key in m]
        best = (max if row.higher_is_better else min)(theirs, default=None)
        ratio = "—"
        if mine is not None and best is not None and mine > 0 and best[0] > 0:
            # Oriented so that > 1 always means Treadle is ahead.
            ratio = f"{(mine / best[0] if row.higher_is_better else best[0] / mine):.2f}x"
        cells = (
            row.label,
            "—" if mine is None else f"{mine:,.2f} {row.unit}",
            "—" if best is None else best[1],
            "—" if best is None else f"{best[0]:,.2f} {row.unit}",
            ratio,
        )
        t.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    return t, lines + [f"\n{n}" for n in notes]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    notes: list[str] = []
    if args.from_dir is not None:
        out = args.from_dir
    else:
        out = args.out or Path(f"/tmp/treadle-peers-{int(time.time())}")
        out.mkdir(parents=True, exist_ok=True)
        if shutil.which("npm") is None:
            notes.append("npm missing: Restate cannot be installed")
        notes += run_peers(args, out)
        run_treadle(args, out)
    t, lines = table(out, args.harness.resolve(), notes)
    console.print(t)
    for note in notes:
        console.print(f"[yellow]{note}[/yellow]")
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    console.print(f"markdown: {out / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
