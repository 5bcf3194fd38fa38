"""Tenant code cannot exhaust the host's processes, leave processes behind, or flood logs.

Each worker has a cgroup (pids, and freezer on cgroup v1) with a process limit; when an
invocation ends, every process it left behind is killed before the invoke returns. The
handlers here are the attacks: a fork bomb, a double-forked daemon, a process that tries
to leave its cgroup, 100 MB of stdout. They run as a tenant (own uid when root).

The cgroup tests need root and a pids controller; they are skipped, with the reason,
otherwise. The log cap needs neither.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.processes import alive, result, wait_gone
from treadle.adapters.sandbox import InvocationOutcome, LocalSandbox, SandboxFunction, cgroups
from treadle.adapters.sandbox.cgroups import MAX_PROCESSES, ResourceGroups
from treadle.adapters.sandbox.handle import MAX_LOG_BYTES

pytestmark = pytest.mark.xdist_group("escape-resources")


def _cgroups_available() -> bool:
    groups = ResourceGroups(MAX_PROCESSES)
    try:
        return groups.available
    finally:
        groups.close()


CGROUPS = _cgroups_available()
needs_cgroups = pytest.mark.skipif(
    not CGROUPS, reason="needs root and a cgroup pids controller (v1 or v2)"
)
BOMB_LIMIT = 64  # per worker in the fork-bomb sandbox: the same code path, less load

ATTACKS = """
import ctypes, os, subprocess, sys, time

def _name(name):
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: findable in /proc

def _cgroup():
    for line in open("/proc/self/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(",") or controllers == "":
            root = "/sys/fs/cgroup/pids" if controllers else "/sys/fs/cgroup"
            if os.path.exists(root + path + "/pids.max"):
                return root + path
    return None

def bomb(event, context):
    if not event.get("seconds"):
        return {"worker": os.getpid()}
    # Every process forks as fast as it can, children too; all stop at `stop`.
    stop = time.time() + event["seconds"]
    worker = os.getpid()
    while time.time() < stop:
        try:
            pid = os.fork()
        except OSError:
            if os.getpid() == worker:
                raise
            time.sleep(0.01)
            continue
        if pid == 0:
            _name("treadlebomb")
    if os.getpid() != worker:
        os._exit(0)
    return "not contained"

def daemon(event, context):
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            _name("treadledaemon")
            os.write(w, str(os.getpid()).encode())
            time.sleep(300)
        os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    return {"daemon": int(os.read(r, 32)), "worker": os.getpid()}

def orphan(event, context):
    # A child the handler never waits for: killed at the end, reaped by the worker later.
    return {"child": subprocess.Popen(["sleep", "300"]).pid, "worker": os.getpid()}

def escape(event, context):
    # Its cgroup as the kernel says (/proc/self/cgroup); the cgroup files themselves are
    # outside the worker's root, so every attempt should fail one way or the other.
    path = next(line.split(":", 2)[2] for line in open("/proc/self/cgroup").read().splitlines()
                if "pids" in line.split(":", 2)[1].split(",") or line.startswith("0::"))
    base = "/sys/fs/cgroup/pids" if os.path.isdir("/sys/fs/cgroup/pids") else "/sys/fs/cgroup"
    attempts = {}
    for target in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        try:
            with open(base + target + "/cgroup.procs", "w") as procs:
                procs.write(str(os.getpid()))
            attempts[target] = "moved"
        except OSError as exc:
            attempts[target] = type(exc).__name__
    try:
        with open(base + path + "/pids.max", "w") as limit:
            limit.write("max")
        attempts["pids.max"] = "raised"
    except OSError as exc:
        attempts["pids.max"] = type(exc).__name__
    return {"pid": os.getpid(), "cgroup": path, "attempts": attempts, "uid": os.getuid()}

def tools(event, context):
    subprocess.run(["true"], check=True)
    out = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True)
    return {"out": out.stdout.strip(), "code": out.returncode}

def flood(event, context):
    line = "x" * 1023 + "\\n"
    for _ in range(event["mib"] * 1024):
        sys.stdout.write(line)
    return "flooded"

def echo(event, context):
    return event

def limits(event, context):
    import resource
    cgroup = _cgroup()
    return {"nproc": list(resource.getrlimit(resource.RLIMIT_NPROC)), "uid": os.getuid(),
            "cgroup": cgroup if cgroup and "/treadle-" in cgroup else None}
"""


def function(code_dir: Path, handler: str, **overrides: Any) -> SandboxFunction:
    fields: dict[str, Any] = {
        "key": f"111111111111/fn/1/{uuid.uuid4().hex}",
        "code_dir": code_dir,
        "handler": handler,
        "function_name": "fn",
        "function_version": "1",
        "invoked_function_arn": "arn:aws:lambda:us-east-1:111111111111:function:fn:1",
        "memory_mb": 512,
        "timeout_s": 30.0,
        "environment": {},
        "log_group": "/aws/lambda/fn",
        "tenant": "111111111111",
    }
    fields.update(overrides)
    return SandboxFunction(**fields)


def call(sb: LocalSandbox, fn: SandboxFunction, event: Any = None) -> InvocationOutcome:
    return sb.invoke(fn, json.dumps(event or {}).encode(), str(uuid.uuid4()))


def named(name: str) -> list[int]:
    """Pids of processes (zombies included) whose name is `name`, host-wide."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code")
    (root / "attacks.py").write_text(ATTACKS)
    # Readable by the tenant's uid whatever the umask (the platform's own is 077).
    (root / "attacks.py").chmod(0o644)
    root.chmod(0o755)
    return root


def _sandbox(base: Path, max_processes: int | None = MAX_PROCESSES) -> LocalSandbox:
    sb = LocalSandbox(work_dir=base / "sandbox", max_processes=max_processes)
    sb.start()
    return sb


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSandbox]:
    sb = _sandbox(tmp_path_factory.mktemp("data"))
    try:
        yield sb
    finally:
        sb.close()


@needs_cgroups
def test_fork_bomb_is_contained_and_the_worker_serves_again(
    code: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sb = _sandbox(tmp_path_factory.mktemp("bomb"), max_processes=BOMB_LIMIT)
    try:
        fn = function(code, "attacks.bomb")
        worker = result(call(sb, fn))["worker"]
        started = time.monotonic()
        outcome = call(sb, fn, {"seconds": 20})
        assert time.monotonic() - started < 10
        assert outcome.error is not None
        assert outcome.error["errorType"] == "BlockingIOError"  # fork: EAGAIN at pids.max
        assert "Resource temporarily unavailable" in outcome.error["errorMessage"]
        # Every bomb process is dead when the invoke returns (zombies wait to be reaped).
        assert not [pid for pid in named("treadlebomb") if alive(pid)]
        # The same function serves the next invocation, from the same worker.
        assert result(call(sb, fn)) == {"worker": worker}
        deadline = time.monotonic() + 5
        while named("treadlebomb") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert named("treadlebomb") == []  # reaped too: the host's process count is back
    finally:
        sb.close()


@needs_cgroups
def test_a_daemon_is_killed_before_the_invoke_returns(sandbox: LocalSandbox, code: Path) -> None:
    fn = function(code, "attacks.daemon")
    got = result(call(sandbox, fn))
    assert not alive(got["daemon"])  # double fork + setsid did not get it out
    assert wait_gone(got["daemon"])  # and it is reaped (by the zygote, its subreaper)
    again = result(call(sandbox, fn))
    assert again["worker"] == got["worker"]  # the worker itself was kept warm
    assert not alive(again["daemon"])


@needs_cgroups
def test_an_unwaited_child_is_killed_and_reaped(sandbox: LocalSandbox, code: Path) -> None:
    fn = function(code, "attacks.orphan")
    first = result(call(sandbox, fn))
    assert not alive(first["child"])
    second = result(call(sandbox, fn))
    assert second["worker"] == first["worker"]
    # The worker collected its killed child when the next invocation began: no zombie.
    assert wait_gone(first["child"], timeout=1.0)


@needs_cgroups
def test_the_worker_cannot_leave_or_raise_its_limit(sandbox: LocalSandbox, code: Path) -> None:
    got = result(call(sandbox, function(code, "attacks.escape")))
    # Refused (another uid's files) or not even there (outside the worker's root).
    assert set(got["attempts"].values()) <= {"PermissionError", "FileNotFoundError"}, got
    assert got["uid"] != 0
    # Seen from the host: still in its own cgroup, with its limit unchanged.
    assert "/treadle-" in got["cgroup"], got
    host = Path("/proc") / str(got["pid"]) / "cgroup"
    assert got["cgroup"] in host.read_text()
    base = Path("/sys/fs/cgroup/pids")
    if not base.is_dir():
        base = Path("/sys/fs/cgroup")
    limit = base / got["cgroup"].lstrip("/") / "pids.max"
    assert limit.read_text().strip() == str(MAX_PROCESSES)


def test_subprocesses_still_work(sandbox: LocalSandbox, code: Path) -> None:
    assert result(call(sandbox, function(code, "attacks.tools"))) == {"out": "42", "code": 0}


def test_log_flood_is_drained_capped_and_marked(sandbox: LocalSandbox, code: Path) -> None:
    other = function(code, "attacks.echo")
    assert result(call(sandbox, other, {"i": -1})) == {"i": -1}  # warm before the flood
    latencies: list[float] = []
    done = threading.Event()

    def meanwhile() -> None:
        i = 0
        while not done.is_set():
            started = time.monotonic()
            assert result(call(sandbox, other, {"i": i})) == {"i": i}
            latencies.append(time.monotonic() - started)
            i += 1
            time.sleep(0.01)

    thread = threading.Thread(target=meanwhile)
    thread.start()
    try:
        started = time.monotonic()
        outcome = call(sandbox, function(code, "attacks.flood"), {"mib": 100})
        elapsed = time.monotonic() - started
    finally:
        done.set()
        thread.join()
    assert result(outcome) == "flooded"
    assert elapsed < 10
    kept = outcome.logs[:-1]
    assert kept and all(line == "x" * 1023 for line in kept)
    assert len(kept) == MAX_LOG_BYTES // 1024
    dropped = 100 * (1 << 20) - len(kept) * 1024
    assert outcome.logs[-1] == f"[treadle] log output truncated: {dropped} bytes dropped"
    assert latencies and max(latencies) < 1.0, latencies
    print(f"\n100 MiB of stdout: {elapsed:.2f} s; concurrent invoke max {max(latencies):.3f} s")
    # The next invocation's logs start afresh.
    assert call(sandbox, function(code, "attacks.echo")).logs == []


@pytest.mark.skipif(os.geteuid() != 0, reason="RLIMIT_NPROC per tenant uid needs root")
def test_without_cgroups_the_tenant_uid_is_limited_and_it_says_so(
    code: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(cgroups.ResourceGroups, "_setup", lambda self, root: None)
    monkeypatch.setattr(cgroups, "_warned", set())
    sb = _sandbox(tmp_path_factory.mktemp("fallback"), max_processes=200)
    try:
        got = result(call(sb, function(code, "attacks.limits")))
    finally:
        sb.close()
    assert got["nproc"] == [200, 200]
    assert got["cgroup"] is None  # not in a cgroup of ours
    assert got["uid"] != 0
    assert "leaves behind may survive its invocation" in caplog.text
