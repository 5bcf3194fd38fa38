"""`python -m benchmarks.run`: run the workloads against real `treadle dev` servers.

Each workload gets a fresh server (fresh data directory) so that one workload's
leftovers (rows, warm workers, parked executions) never colour the next. The workload
runs on a worker thread under a deadline; the server is started and always stopped on
the main thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType

from rich.console import Console

from benchmarks import batch, floor, invoke, parking, procfs, repos, scale, steps, throughput
from benchmarks.profiling import FORMATS, MODES, Profiler
from benchmarks.report import WorkloadResult, meta, print_table, write_json
from benchmarks.server import BenchServer
from benchmarks.spec import Deadline, Env, Options, Workload, WorkloadTimeout
from treadle.settings import ENV_PROCESSES

RESULTS = Path(__file__).resolve().parent / "results"
WORKLOADS: dict[str, Workload] = {
    w.id: w
    for w in (
        floor.WORKLOAD,
        invoke.WORKLOAD,
        steps.WORKLOAD,
        throughput.WORKLOAD,
        batch.WORKLOAD,
        parking.W3S,
        parking.W3E,
        scale.WORKLOAD,
        repos.WORKLOAD,
    )
}
# A workload's thread may sit in a blocking call when its deadline passes: this is how
# long it gets to notice before the server is stopped under it.
GRACE_S = 15.0
# Cores used by processes other than the server and this client above which a
# workload's figures are flagged as perturbed (a test suite running alongside, say).
OTHER_LOAD_NOTE = 0.25

console = Console(stderr=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--only", help=f"comma-separated ids among {','.join(WORKLOADS)}")
    p.add_argument("--runs", type=int, default=3, help="runs per workload (median reported)")
    p.add_argument("--w4-count", type=int, default=5_000, help="W4 executions (50000: full)")
    p.add_argument("--w4-lead", type=float, default=None, help="W4 seconds to the due instant")
    p.add_argument("--w4-runs", type=int, default=1, help="W4 runs (it is the long one)")
    p.add_argument("--w3-count", type=int, default=2_000, help="W3s/W3e executions per run")
    p.add_argument("--w2-count", type=int, default=1_000, help="W2 executions per run")
    p.add_argument("--w2b-count", type=int, default=5_000, help="W2b executions per run")
    p.add_argument("--repos-count", type=int, default=10_000, help="R1 repositories (10000: full)")
    p.add_argument("--threads", type=int, default=4, help="client threads for fan-outs")
    p.add_argument(
        "--processes", type=int, default=1, help="server processes (treadle dev --processes)"
    )
    p.add_argument(
        "--client",
        choices=("lean", "boto3"),
        default="lean",
        help="the start workloads' Invoke client (benchmarks/lean.py; boto3: the old one)",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every workload's time budget (e.g. 5 to let a slow platform finish)",
    )
    p.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="result file")
    p.add_argument("--profile", metavar="ID", help="run py-spy on the server during ID")
    p.add_argument("--profile-format", choices=sorted(FORMATS), default="svg")
    p.add_argument(
        "--profile-mode", choices=sorted(MODES), default="cpu", help="cpu: GIL holders only"
    )
    p.add_argument("--keep-data", action="store_true", help="keep the servers' data dirs")
    args = p.parse_args(argv)
    counts = (args.runs, args.w4_runs, args.w4_count, args.w3_count, args.w2_count, args.w2b_count)
    if min(*counts, args.repos_count, args.processes) < 1:
        p.error("counts and runs must be at least 1")
    if args.time_scale <= 0:
        p.error("--time-scale must be positive")
    return args


def _selected(only: str | None) -> list[Workload]:
    if not only:
        return list(WORKLOADS.values())
    by_lower = {k.lower(): w for k, w in WORKLOADS.items()}
    wanted = [x.strip().lower() for x in only.split(",") if x.strip()]
    unknown = [x for x in wanted if x not in by_lower]
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)}; known: {list(WORKLOADS)}")
    return [w for k, w in by_lower.items() if k in wanted]


def _runs(wl: Workload, env: Env, result: WorkloadResult) -> None:
    if wl.setup is not None:
        wl.setup(env)
    longest = 0.0
    for i in range(result.runs_requested):
        if i and longest * 1.1 > env.deadline.remaining():
            # Another run would not fit in the budget: report the ones done, not a timeout.
            result.notes.append(f"{result.runs_requested - i} run(s) skipped: time budget")
            return
        env.partial.clear()
        t0 = time.monotonic()
        figures = wl.run(env)
        longest = max(longest, time.monotonic() - t0)
        result.runs.append(figures)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in figures.items())
        console.print(f"  [dim]{wl.id} run {i + 1}/{result.runs_requested}: {shown}[/]")


def _in_thread(wl: Workload, env: Env, result: WorkloadResult) -> None:
    """Run on a daemon thread; a thread stuck past its deadline is abandoned."""
    failure: list[BaseException] = []

    def body() -> None:
        try:
            _runs(wl, env, result)
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)

    thread = threading.Thread(target=body, name=f"workload-{wl.id}", daemon=True)
    thread.start()
    thread.join(max(0.0, env.deadline.remaining()) + GRACE_S)
    budget = f"{wl.budget_s(env.options) * env.options.time_scale:.0f} s budget"
    if thread.is_alive():
        result.status = "timeout"
        result.notes.append(f"timeout ({budget}): stuck in a call; abandoned")
    elif failure and isinstance(failure[0], WorkloadTimeout):
        result.status = "timeout"
        result.notes.append(f"timeout ({budget}) while {failure[0]}")
    elif failure:
        result.status = "error"
        result.error = f"{type(failure[0]).__name__}: {failure[0]}"
        console.print("".join(traceback.format_exception(failure[0])), markup=False)
    if result.status == "timeout" and env.partial:
        result.partial = dict(env.partial)
        if not result.runs and any(m.key in env.partial for m in wl.metrics):
            result.notes.append("figures marked * come from the run that timed out")


def execute(wl: Workload, options: Options, args: argparse.Namespace) -> WorkloadResult:
    title = wl.title.format(**dataclasses.asdict(options))
    result = WorkloadResult(wl, title, wl.runs(options))
    console.print(f"[bold]{wl.id}[/] {title}")
    started = time.monotonic()
    deadline = Deadline.after(wl.budget_s(options) * options.time_scale)
    server = None
    if wl.needs_server:
        processes = {ENV_PROCESSES: str(options.processes)} if options.processes > 1 else None
        server = BenchServer(keep_data=options.keep_data, env=processes)
    profiler: Profiler | None = None
    meter: procfs.LoadMeter | None = None
    try:
        if server is not None:
            server.start()
            console.print(f"  [dim]server pid {server.pid} at {server.url} ({server.root})[/]")
        meter = procfs.LoadMeter(server.pid if server is not None else None)
        env = Env(server, options, deadline)
        if server is not None and args.profile and args.profile.lower() == wl.id.lower():
            profiler = Profiler(server.pid, wl.id, RESULTS, args.profile_format, args.profile_mode)
            profiler.start()
        _in_thread(wl, env, result)
        result.notes.extend(env.notes)
    finally:
        if meter is not None:
            _record_load(result, meter.read())
        if profiler is not None:
            profiler.stop()
            result.profile = str(profiler.output) if profiler.problem is None else None
            result.notes.append(
                profiler.problem or f"profiled (figures perturbed): {profiler.output}"
            )
        if server is not None:
            failed = result.status != "ok"
            if failed:
                result.notes.append(f"server log: {server.log_path}")
            server.stop(keep_log=failed)
    if result.status == "ok" and result.runs and len(result.runs) < result.runs_requested:
        result.status = "partial"
    result.elapsed_s = time.monotonic() - started
    return result


def _record_load(result: WorkloadResult, load: procfs.Load) -> None:
    result.load = {
        "server": round(load.cores(load.server_s), 2),
        "client": round(load.cores(load.client_s), 2),
        "other": round(load.cores(load.other_s), 2),
    }
    if result.load["other"] >= OTHER_LOAD_NOTE:
        result.notes.append(
            f"other processes on this machine used {result.load['other']:.1f} cores on "
            "average meanwhile: figures perturbed"
        )


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds the main thread through every `finally`: servers get stopped.
    sys.exit(143)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    options = Options(
        runs=args.runs,
        w4_count=args.w4_count,
        w4_lead_s=args.w4_lead,
        w4_runs=args.w4_runs,
        w3_count=args.w3_count,
        w2_count=args.w2_count,
        w2b_count=args.w2b_count,
        repos_count=args.repos_count,
        client_threads=args.threads,
        time_scale=args.time_scale,
        keep_data=args.keep_data,
        processes=args.processes,
        client=args.client,
    )
    workloads = _selected(args.only)
    if args.profile and args.profile.lower() not in {w.id.lower() for w in workloads}:
        raise SystemExit(f"--profile {args.profile}: not among the workloads being run")
    signal.signal(signal.SIGTERM, _terminate)
    load_before = os.getloadavg()
    if load_before[0] > 1.0:
        console.print(
            f"[yellow]the machine is busy (load average {load_before[0]:.1f}): other processes "
            "will perturb the figures; each workload reports how much[/]"
        )
    wall0, started = time.monotonic(), time.time()
    # Read now: each workload's fresh server loads the code on disk when it starts, so
    # the commit at the start (and the changed files) is what the figures describe.
    info = meta(dataclasses.asdict(options), started)
    results: list[WorkloadResult] = []
    try:
        for wl in workloads:
            results.append(execute(wl, options, args))
    finally:
        elapsed = time.monotonic() - wall0
        info["elapsed_s"] = round(elapsed, 1)
        info["loadavg_before"], info["loadavg_after"] = load_before, os.getloadavg()
        write_json(args.json, info, results)
        if results:
            print_table(results, elapsed)
        console.print(f"results: {args.json}")
    # A timeout is a measurement (the platform was too slow); an error is a broken run.
    return 1 if any(r.status == "error" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
