"""Soak: a steady mixed workload against `treadle dev`, with the platform's vitals each minute.

    make soak MINUTES=30
    python -m benchmarks.soak --minutes 5 --rate 1.0

Each second (times `--rate`) it starts one-step executions and a short durable wait;
it parks executions on callbacks and answers them a few seconds later, stops some
parked ones, and every 10 s pushes a commit with the `git` CLI and deploys that ref
(`POST /v1/functions/{name}/deploy`: a new published version). Once a minute it prints
the server tree's memory (RSS and PSS summed over the tree), open file descriptors,
threads, processes and the data directory's size, beside the work done and the errors.
The data directory grows with the executions it keeps (retention is in days), so the
figure to watch there is its size per execution started.
At the end, the growth of each vital from the first sample after warm-up to the last,
per minute: a platform that leaks shows it there. Results also go to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks import handlers, procfs, traced
from benchmarks.common import ARN_HEADER
from benchmarks.server import BenchServer, client, deploy
from treadle.tenancy.credentials import read_profile

console = Console()
ACCOUNT = "123456789012"
PLAIN = "def handler(event, context):\n    return {'version': %d}\n"
# Vitals of the first minutes are not judged: pools, caches and warm workers fill up.
WARMUP_MINUTES = 2


@dataclass
class Counts:
    started: int = 0
    answered: int = 0
    stopped: int = 0
    pushes: int = 0
    deploys: int = 0
    errors: int = 0
    last_error: str = ""


@dataclass
class Sample:
    minute: int
    rss_mib: float
    pss_mib: float
    server_pss_mib: float  # the server process alone (the rest: sandbox workers)
    fds: int
    threads: int
    processes: int
    data_mib: float
    counts: dict[str, Any] = field(default_factory=dict)


def _tree_fds_threads(root: int) -> tuple[int, int]:
    fds = threads = 0
    for pid in procfs.tree(root):
        try:
            fds += len(os.listdir(f"/proc/{pid}/fd"))
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Threads:"):
                        threads += int(line.split()[1])
        except OSError:
            continue  # gone between the listing and the read
    return fds, threads


def _du_mib(path: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total / 2**20


class Soak:
    def __init__(self, srv: BenchServer, rate: float, work: Path) -> None:
        self.srv = srv
        self.rate = rate
        self.work = work
        self.lam = client(srv, pool=20)
        found = read_profile(srv.data_dir / "credentials", "treadle")
        assert found is not None
        self.key = (found["aws_access_key_id"], found["aws_secret_access_key"])
        self.http = httpx.Client(base_url=srv.url, auth=self.key, timeout=60)
        self.counts = Counts()
        self.parked: deque[str] = deque()
        self.lock = threading.Lock()
        self.version = 0

    def fail(self, what: str, exc: BaseException) -> None:
        with self.lock:
            self.counts.errors += 1
            self.counts.last_error = f"{what}: {exc}"[:300]

    def setup(self) -> None:
        deploy(self.lam, "soak-step", handlers.FILES, handlers.handler("one_step"))
        deploy(self.lam, "soak-wait", handlers.FILES, handlers.handler("wait_then_step"))
        deploy(self.lam, "soak-callback", handlers.FILES, handlers.handler("callback"))
        self.http.post("/v1/repos", json={"name": "soak"}).raise_for_status()
        self.repo = self.work / "soak"
        self.repo.mkdir()
        self._git("init", "-q")

    def _git(self, *args: str) -> None:
        cmd = ["git", "-c", "user.name=Soak", "-c", "user.email=soak@example.com"]
        cmd += ["-c", "init.defaultBranch=main", *args]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.work)}
        env |= {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        subprocess.run(cmd, cwd=self.repo, env=env, check=True, capture_output=True, timeout=60)

    def start(self, function: str, payload: dict[str, Any]) -> str:
        out = self.lam.invoke(
            FunctionName=function, InvocationType="Event", Payload=json.dumps(payload)
        )
        with self.lock:
            self.counts.started += 1
        return str(out["ResponseMetadata"]["HTTPHeaders"][ARN_HEADER])

    def every_second(self, tick: int) -> None:
        for _ in range(max(1, round(5 * self.rate))):
            self.start("soak-step", {})
        self.start("soak-wait", {"wait": 2})
        self.parked.append(self.start("soak-callback", {}))
        if len(self.parked) > 5:  # parked for ~5 s: answer the oldest, or stop it
            arn = self.parked.popleft()
            if tick % 5 == 0:
                self.lam.stop_durable_execution(DurableExecutionArn=arn)
                with self.lock:
                    self.counts.stopped += 1
            else:
                self._answer(arn)

    def _answer(self, arn: str) -> None:
        history = self.lam.get_durable_execution_history(DurableExecutionArn=arn)
        ids = [
            e["CallbackStartedDetails"]["CallbackId"]
            for e in history["Events"]
            if "CallbackStartedDetails" in e
        ]
        if not ids:  # not parked yet: try again later
            self.parked.append(arn)
            return
        self.lam.send_durable_execution_callback_success(CallbackId=ids[0], Result=b'"ok"')
        with self.lock:
            self.counts.answered += 1

    def push_and_deploy(self) -> None:
        self.version += 1
        (self.repo / "handler.py").write_text(PLAIN % self.version)
        self._git("add", "handler.py")
        self._git("commit", "-qm", f"version {self.version}")
        url = self.srv.url.replace("http://", f"http://{self.key[0]}:{self.key[1]}@")
        self._git("push", "-q", f"{url}/git/{ACCOUNT}/soak.git", "main")
        body = {"repo": "soak", "ref": "main", "handler": "handler.handler"}
        self.http.post("/v1/functions/soak-deployed/deploy", json=body).raise_for_status()
        with self.lock:
            self.counts.pushes += 1
            self.counts.deploys += 1

    def sample(self, minute: int) -> Sample:
        mem = procfs.tree_memory(self.srv.pid)
        server_pss = procfs.process_pss_mib(self.srv.pid)
        fds, threads = _tree_fds_threads(self.srv.pid)
        with self.lock:
            counts = asdict(self.counts)
        return Sample(
            minute, mem.rss_mib, mem.pss_mib, server_pss, fds, threads, mem.processes,
            _du_mib(self.srv.data_dir), counts,
        )  # fmt: skip


def _line(s: Sample) -> str:
    c = s.counts
    return (
        f"min {s.minute:3d}  RSS {s.rss_mib:7.1f} MiB  PSS {s.pss_mib:7.1f} MiB "
        f"(server {s.server_pss_mib:6.1f})  "
        f"fds {s.fds:5d}  threads {s.threads:4d}  procs {s.processes:3d}  "
        f"data {s.data_mib:7.1f} MiB | started {c['started']:,} answered {c['answered']:,} "
        f"stopped {c['stopped']:,} pushes {c['pushes']} errors {c['errors']}"
    )


def _server(tracemalloc: bool, snapshots: Path) -> BenchServer:
    if not tracemalloc:
        return BenchServer()
    env = {traced.ENV_SNAPSHOTS: str(snapshots)}
    return BenchServer(module="benchmarks.traced", env=env)


def growth_table(samples: list[Sample]) -> Table:
    t = Table(title="Growth per minute after warm-up (first judged sample -> last)")
    for col in ("vital", "after warm-up", "last", "per minute"):
        t.add_column(col, justify="left" if col == "vital" else "right")
    judged = [s for s in samples if s.minute >= WARMUP_MINUTES] or samples
    first, last = judged[0], judged[-1]
    minutes = max(1, last.minute - first.minute)
    for name in ("rss_mib", "pss_mib", "server_pss_mib", "fds", "threads", "processes", "data_mib"):
        a, b = float(getattr(first, name)), float(getattr(last, name))
        t.add_row(name, f"{a:,.1f}", f"{b:,.1f}", f"{(b - a) / minutes:+,.2f}")
    # The data directory grows with the executions it keeps (their retention is days):
    # what must stay flat is what each one costs.
    a, b = _kib_per_execution(first), _kib_per_execution(last)
    t.add_row("data KiB per execution", f"{a:,.2f}", f"{b:,.2f}", f"{(b - a) / minutes:+,.3f}")
    return t


def _kib_per_execution(s: Sample) -> float:
    return s.data_mib * 1024 / max(1, s.counts.get("started", 0))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=30.0, help="how long to run")
    p.add_argument("--rate", type=float, default=1.0, help="multiplies the starts per second")
    p.add_argument("--json", type=Path, default=None, help="where to write the samples")
    p.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the server's allocations; print what grew from warm-up to the end",
    )
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        p.error("--minutes and --rate must be positive")
    with (
        tempfile.TemporaryDirectory(prefix="treadle-soak-") as tmp,
        _server(args.tracemalloc, Path(tmp) / "snapshots") as srv,
    ):
        soak = Soak(srv, args.rate, Path(tmp))
        soak.setup()
        samples = [soak.sample(0)]
        console.print(_line(samples[0]))
        began = time.monotonic()
        tick = 0
        while (elapsed := time.monotonic() - began) < args.minutes * 60:
            tick += 1
            try:
                soak.every_second(tick)
                if tick % 10 == 0:
                    soak.push_and_deploy()
            except Exception as exc:  # counted and shown; a soak must not stop on one
                soak.fail("tick", exc)
            if int(elapsed // 60) >= len(samples):
                samples.append(soak.sample(len(samples)))
                console.print(_line(samples[-1]))
                if args.tracemalloc and samples[-1].minute == WARMUP_MINUTES:
                    traced.snapshot(srv, Path(tmp) / "snapshots")
            time.sleep(max(0.0, began + tick - time.monotonic()))
        samples.append(soak.sample(len(samples)))
        console.print(_line(samples[-1]))
        if soak.counts.last_error:
            console.print(f"[yellow]last error: {soak.counts.last_error}[/yellow]")
        console.print(growth_table(samples))
        if args.tracemalloc:
            last = traced.snapshot(srv, Path(tmp) / "snapshots")
            first = Path(tmp) / "snapshots" / "0.snapshot"
            console.print(traced.growth(first, last), soft_wrap=True)
            console.print(traced.growth_tracebacks(first, last), soft_wrap=True, markup=False)
        out = args.json or Path(tmp).with_name(f"treadle-soak-{int(time.time())}.json")
        out.write_text(json.dumps([asdict(s) for s in samples], indent=1))
        console.print(f"samples: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
