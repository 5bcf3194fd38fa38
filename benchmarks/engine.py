"""The server's own CPU per one-step execution, in one process, without HTTP or workers.

    .venv/bin/python -m benchmarks.engine                   # 3 rounds of 3,000
    .venv/bin/python -m benchmarks.engine --profile 30      # and py-spy's top 30
    .venv/bin/python -m benchmarks.engine --sql             # and the time of each SQL statement
    .venv/bin/python -m benchmarks.engine --pages           # and the WAL pages, by b-tree
    .venv/bin/python -m benchmarks.engine --wait            # executions that park on a wait
    .venv/bin/python -m benchmarks.engine --batch           # started by batch starts (W2b)

W2's figures move by ±10% from one run to the next on this VM (the scheduler, the other
core, the client), so a change worth 3% of the server's CPU cannot be seen there. This
measures what a change to the engine, the stores or the layers around an invocation
does to the server's CPU alone (the VM still moves it by a few percent between runs:
compare runs made in turn). The embedded platform, as `treadle dev` builds it, serves
W2's one-step executions, asynchronous Invokes made in-process with
`Application.call_as` (routing, validation, audit, the start, the lane, the engine,
the durable channel's decoding, the logs' store: everything but the HTTP server and the
signature check). The sandbox is replaced by a worker played in-process: for each
invocation it makes the checkpoint the SDK makes for one step (START and SUCCEED in one
call, through the durable channel's handler) and returns the SDK's answer. What it does
not measure: uvicorn, SigV4, the worker's own CPU, and the cost of two processes
exchanging frames (`benchmarks.threads` shows those in the real server).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import handlers, profile_summary, profiling
from benchmarks.server import zip_files
from treadle.adapters.sandbox.function_runtime import SandboxRuntime, UnpackedCode
from treadle.adapters.sandbox.handle import CallHandler
from treadle.adapters.sandbox.spec import InvocationOutcome, SandboxFunction
from treadle.domain.logs import LogStore
from treadle.platform.core import sandbox_env
from treadle.platform.embedded import EmbeddedPlatform
from treadle.settings import Settings

FUNCTION = "e1-one-step"
WARM_UP = 300
BATCH = 100  # W2b's starts per call
EVENT = {"x-amz-invocation-type": "Event"}


WAIT_ID = "c81e728d9d4c2f63"  # the SDK's id of a handler's first operation, as for the step


class PlayedWorker:
    """The sandbox's place, played in-process: what the SDK does for one step, or with
    `wait_s` for a durable wait then one step (the first invocation parks, the second
    replays the wait and runs the step)."""

    def __init__(self) -> None:
        self.calls = 0
        self.wait_s: int | None = None

    def invoke(
        self,
        fn: SandboxFunction,
        payload: bytes,
        request_id: str,
        on_call: CallHandler | None = None,
        trace_header: str | None = None,
    ) -> InvocationOutcome:
        started = time.time()
        envelope = json.loads(payload)
        assert on_call is not None, "the durable channel serves no calls"
        replayed = {op["Id"] for op in envelope["InitialExecutionState"]["Operations"]}
        self.calls += 1
        if self.wait_s is not None and WAIT_ID not in replayed:
            wait = {"Id": WAIT_ID, "Type": "WAIT", "SubType": "Wait", "Action": "START"}
            _checkpoint(on_call, envelope, [{**wait, "WaitOptions": {"WaitSeconds": self.wait_s}}])
            answer = {"Status": "PENDING"}
        else:
            update = {"Id": "c4ca4238a0b92382", "Type": "STEP", "SubType": "Step", "Name": "only"}
            _checkpoint(
                on_call,
                envelope,
                [{**update, "Action": "START"}, {**update, "Action": "SUCCEED", "Payload": "1"}],
            )
            answer = {"Status": "SUCCEEDED", "Result": "1"}
        return InvocationOutcome(
            request_id=request_id,
            payload=json.dumps(answer).encode(),
            error=None,
            logs=[],
            started_at=started,
            ended_at=time.time(),
            max_memory_kb=40_000,
            init_ms=None,
        )

    def prepare(self, fn: SandboxFunction) -> bool:
        return False

    def tenant_endpoint(self, tenant: str) -> str | None:
        return None

    def tenant_group(self, tenant: str) -> int | None:
        return None


def _checkpoint(on_call: CallHandler, envelope: dict[str, Any], updates: list[Any]) -> None:
    params = {
        "DurableExecutionArn": envelope["DurableExecutionArn"],
        "CheckpointToken": envelope["CheckpointToken"],
        "Updates": updates,
    }
    header, _body = on_call("checkpoint", json.dumps(params).encode())
    if header.get("error"):
        raise RuntimeError(f"checkpoint refused: {header['error']}")


class PlayedPlatform(EmbeddedPlatform):
    """The embedded platform with its sandbox played in-process."""

    played = PlayedWorker()
    batch = False  # `--batch`: W2b's starts

    def _local_sandbox(self, code: UnpackedCode, logs: LogStore) -> SandboxRuntime:
        self.sandbox_runtime = SandboxRuntime(
            sandbox=self.played,  # type: ignore[arg-type]  # the three methods it calls
            code=code,
            logs=logs,
            platform_env=sandbox_env(self.settings, self.endpoint),
            tenant_env=self.sandbox_keys.env,
            init_ahead=False,
        )
        return self.sandbox_runtime


class _Closed:
    """Counts executions that closed (the engine's completion listener is the app's)."""

    def __init__(self) -> None:
        self.n = 0
        self.cond = threading.Condition()

    def status_changed(self, event: Any) -> None:
        if event.status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED"):
            with self.cond:
                self.n += 1
                self.cond.notify_all()

    def wait_for(self, n: int, timeout_s: float = 120.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.n >= n, timeout_s):
                raise RuntimeError(f"only {self.n} of {n} executions closed")


@contextmanager
def played_platform(
    wait_time_scale: float = 1.0,
) -> Iterator[tuple[PlayedPlatform, str, _Closed]]:
    """A started embedded platform in a fresh data directory, its worker played."""
    root = Path(tempfile.mkdtemp(prefix="treadle-engine-bench-"))
    settings = Settings.from_env(data_dir=root / "data", port=0, wait_time_scale=wait_time_scale)
    platform = PlayedPlatform(settings, endpoint="http://127.0.0.1:1")
    closed = _Closed()
    engine = platform.engine
    engine.status_listeners = (*engine.status_listeners, closed.status_changed)
    try:
        platform.start()
        yield platform, settings.default_account, closed
    finally:
        platform.close()
        shutil.rmtree(root, ignore_errors=True)


def _call(platform: PlayedPlatform, tenant: str, path: str, body: dict[str, Any]) -> Any:
    response = platform.app.call_as(tenant, "POST", path, body=json.dumps(body).encode())
    if response.status >= 300:
        raise RuntimeError(f"{path}: HTTP {response.status} {response.body[:300]!r}")
    return response


def deploy(platform: PlayedPlatform, tenant: str) -> None:
    code = zip_files(handlers.FILES)
    _call(
        platform,
        tenant,
        "/2015-03-31/functions",
        {
            "FunctionName": FUNCTION,
            "Runtime": "python3.11",
            "Role": "arn:aws:iam::123456789012:role/treadle-bench",
            "Handler": handlers.handler("one_step"),
            "Code": {"ZipFile": base64.b64encode(code).decode()},
            "DurableConfig": {"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1},
        },
    )


def start_many(platform: PlayedPlatform, tenant: str, closed: _Closed, n: int) -> None:
    """`n` asynchronous Invokes, one after the other (or batch starts of 100 with
    `--batch`), then wait for all to close."""
    target = closed.n + n
    if PlayedPlatform.batch:
        path = f"/v1/functions/{FUNCTION}/executions:batch"
        for i in range(0, n, BATCH):
            body = {"executions": [{"input": {}} for _ in range(min(BATCH, n - i))]}
            _call(platform, tenant, path, body)
    else:
        path = f"/2015-03-31/functions/{FUNCTION}/invocations"
        for _ in range(n):
            response = platform.app.call_as(tenant, "POST", path, body=b"{}", headers=EVENT)
            if response.status != 202:
                raise RuntimeError(f"Invoke: HTTP {response.status} {response.body[:300]!r}")
    closed.wait_for(target)


class _TimedConnection:
    """A connection whose statements are timed by their text (`--sql`): wall time and
    the calling thread's CPU (on one core, a statement's wall time also holds the other
    threads that ran while it waited for the disk or the GIL)."""

    def __init__(self, conn: sqlite3.Connection, stats: dict[str, list[float]]) -> None:
        self._conn = conn
        self._stats = stats

    def _timed(self, kind: str, run: Callable[..., Any], sql: str, *args: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return run(sql, *args)
        finally:
            entry = self._stats[kind + " ".join(sql.split())[:100]]
            entry[0] += 1
            entry[1] += time.perf_counter() - t0
            entry[2] += time.thread_time() - c0

    def execute(self, sql: str, *args: Any) -> Any:
        return self._timed("", self._conn.execute, sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._timed("MANY ", self._conn.executemany, sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _time_sql(platform: PlayedPlatform) -> dict[str, list[float]]:
    stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    assert platform.db is not None
    file = platform.db.file
    file._conn = _TimedConnection(file._conn, stats)  # type: ignore[assignment]
    return stats


def wal_frames(wal: bytes) -> list[tuple[int, bool]]:
    """(page number, ends a commit) of each frame of a WAL file since its last reset.

    By hand: SQLite has no API that lists a WAL's frames, and the format is four fields
    (sqlite.org/fileformat2.html#walformat): a 32-byte header, then per frame a 24-byte
    header and the page. Frames whose salts are not the header's are left over from
    before the last reset."""
    if len(wal) < 32:
        return []
    page_size = struct.unpack(">I", wal[8:12])[0]
    salts = wal[16:24]
    frames = []
    offset = 32
    while offset + 24 + page_size <= len(wal):
        page, commit_size = struct.unpack(">II", wal[offset : offset + 8])
        if wal[offset + 8 : offset + 16] != salts:
            break
        frames.append((page, commit_size != 0))
        offset += 24 + page_size
    return frames


def pages_written(platform: PlayedPlatform, tenant: str, closed: _Closed, n: int) -> None:
    """Which b-trees (tables, indexes) `n` executions' commits write, per execution."""
    assert platform.db is not None
    path = platform.db.file.path
    with platform.db.file.locked() as conn:
        conn.execute("PRAGMA wal_autocheckpoint=0")  # no reset of the WAL while counting
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    try:
        start_many(platform, tenant, closed, n)
        frames = wal_frames(Path(f"{path}-wal").read_bytes())
    finally:
        with platform.db.file.locked() as conn:
            conn.execute("PRAGMA wal_autocheckpoint=1000")
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = dict(reader.execute("SELECT pageno, name FROM dbstat"))
    finally:
        reader.close()
    commits = sum(1 for _, ends in frames if ends)
    print(
        f"\nWAL: {len(frames) / n:.1f} pages per execution ({len(frames) * 4 / n:.0f} KiB),"
        f" {commits / n:.2f} commits, {len(frames) / max(commits, 1):.1f} pages per commit"
    )
    by_tree = Counter(names.get(page, "(freed)") for page, _ in frames)
    for name, count in by_tree.most_common():
        print(f"{count / n:7.2f}  {name}")


def _cpu_s() -> float:
    """This process's CPU (every thread: the lanes run the invocations)."""
    t = os.times()
    return t.user + t.system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__)
    parser.add_argument("--count", type=int, default=3000, help="executions per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--profile", type=int, default=0, metavar="TOP", help="py-spy's top functions"
    )
    parser.add_argument("--sql", action="store_true", help="time each SQL statement")
    parser.add_argument("--pages", action="store_true", help="b-trees written per execution")
    parser.add_argument("--warm-up", type=int, default=WARM_UP, help="executions first")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="a durable wait before the step (1 s at a time scale of 0.001): each execution"
        " parks and is resumed by its timer, as W3s and W4",
    )
    parser.add_argument(
        "--batch", action="store_true", help="W2b: started by batch starts of 100, not Invoke"
    )
    parser.add_argument(
        "--all-cores", action="store_true", help="do not pin this process to one core"
    )
    args = parser.parse_args(argv)
    if not args.all_cores:
        # One core, as the server's threads are (`treadle/affinity.py`): threads handing
        # the GIL across two cores cost more and vary more.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    PlayedPlatform.played.wait_s = 1 if args.wait else None
    PlayedPlatform.batch = args.batch
    with played_platform(0.001 if args.wait else 1.0) as (platform, tenant, closed):
        deploy(platform, tenant)
        start_many(platform, tenant, closed, args.warm_up)
        figures = []
        for r in range(args.rounds):
            c0, w0 = _cpu_s(), time.perf_counter()
            start_many(platform, tenant, closed, args.count)
            cpu_ms = (_cpu_s() - c0) * 1000 / args.count
            wall_ms = (time.perf_counter() - w0) * 1000 / args.count
            figures.append(cpu_ms)
            print(f"round {r + 1}: {cpu_ms:.3f} ms CPU per execution ({wall_ms:.3f} ms wall)")
        print(f"best {min(figures):.3f} ms CPU per execution (server process, no HTTP, no worker)")
        if args.pages:
            pages_written(platform, tenant, closed, 50)
        if args.sql:
            stats = _time_sql(platform)
            start_many(platform, tenant, closed, args.count)
            total = sum(v[1] for v in stats.values())
            cpu = sum(v[2] for v in stats.values())
            calls = sum(v[0] for v in stats.values())
            per = 1e6 / args.count
            print(f"\nSQL: {total * per / 1000:.3f} ms wall, {cpu * per / 1000:.3f} ms CPU,"
                  f" {calls / args.count:.1f} statements per execution")  # fmt: skip
            print("    wall      CPU")
            for text, (n, t, c) in sorted(stats.items(), key=lambda kv: -kv[1][2])[:25]:
                line = f"{t * per:6.1f} µs {c * per:6.1f} µs {n / args.count:5.2f}/execution"
                print(f"{line}  {text}")
        if args.profile:
            _profiled(
                args.profile, args.count, lambda: start_many(platform, tenant, closed, args.count)
            )
    return 0


def _profiled(top: int, count: int, work: Callable[[], None]) -> None:
    """`work` (`count` executions) under py-spy (every thread: the lanes run the
    invocations, which cProfile, enabled on one thread, would not see), then the summary
    of `profile_summary` in ms per execution."""
    exe = profiling.py_spy()
    if exe is None:
        print("py-spy is not installed (pip install py-spy): not profiled")
        return
    out = Path(tempfile.mkdtemp(prefix="treadle-engine-profile-")) / "profile.speedscope.json"
    spy = subprocess.Popen(
        profiling.command(exe, os.getpid(), out, "speedscope"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the work starts
    try:
        work()
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spy.wait(timeout=120)
    if not out.exists():
        print("py-spy wrote no profile (ptrace not allowed here?)")
        return
    print(f"\nprofile: {out}")
    profile_summary.main([str(out), "--per", str(count), "--top", str(top)])


if __name__ == "__main__":
    raise SystemExit(main())
