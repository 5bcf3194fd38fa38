"""What the crash-at-every-boundary test runs and watches
(tests/integration/test_commit_boundaries.py): its tenant code, its Git working tree,
and the processes of the server it crashes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from pathlib import Path

from support.processes import alive

ECHO = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    return context.step(lambda step_ctx: {"echo": event["n"]}, name="echo")
"""

FLOW = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from treadle_facets import connect, once, step_key

RETRY = StepConfig(
    retry_strategy=create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=5,
            initial_delay=Duration.from_seconds(1),
            jitter_strategy=JitterStrategy.NONE,
        )
    )
)


def flaky(step_ctx):
    if step_ctx.attempt < 2:
        raise RuntimeError("the first attempt fails")
    return "flaky-ok"


def pay(step_ctx):
    db = connect("ledger")
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS ledger(k TEXT PRIMARY KEY, amount INT)")

    def effect(db):
        db.execute("INSERT INTO ledger VALUES (?, ?)", (step_key(step_ctx), 10))
        return "paid"

    return once(db, step_key(step_ctx), effect)


def group(ctx):
    return [ctx.step(lambda s: "g1", name="g1"), ctx.step(lambda s: "g2", name="g2")]


@durable_execution
def handler(event, context: DurableContext):
    flaky_result = context.step(flaky, name="flaky", config=RETRY)
    context.wait(Duration.from_seconds(2), name="nap")
    approval = context.wait_for_callback(lambda cid, ctx: None, name="approval")
    grouped = context.run_in_child_context(group, name="group")
    chained = context.invoke("echo", {"n": event["n"]}, name="chain")
    mapped = context.map([1, 2, 3], lambda ctx, item, i, items: item * 10, name="tens")
    paid = context.step(pay, name="pay")
    return {
        "flaky": flaky_result,
        "approval": approval,
        "group": grouped,
        "chained": chained,
        "map": mapped.get_results(),
        "pay": paid,
    }
"""

# What FLOW returns for {"n": 7}, crashed or not.
FLOW_RESULT = {
    "flaky": "flaky-ok",
    "approval": "yes",
    "group": ["g1", "g2"],
    "chained": {"echo": 7},
    "map": [10, 20, 30],
    "pay": "paid",
}

PLAIN = """
def handler(event, context):
    return "from git"
"""


def git_env(home: Path) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }


def git(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    cmd += ["-c", "init.defaultBranch=main", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def descendants(pid: int) -> set[tuple[int, str]]:
    """Processes under `pid` now, with their start time (pids are reused)."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: set[tuple[int, str]] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def same_process_alive(pid: int, started: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and alive(pid)


class Watch:
    """Every process under the server while it runs (its tenant workers), sampled."""

    def __init__(self, pid: int) -> None:
        self.seen: set[tuple[int, str]] = set()
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            if not alive(self._pid):
                return  # its children now belong to another parent
            self.seen |= descendants(self._pid)

    def close(self) -> set[tuple[int, str]]:
        self._stop.set()
        self._thread.join()
        return self.seen
