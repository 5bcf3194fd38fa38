"""Facets under kill -9: of the worker mid-write, of the server mid-write, and of the
server in the middle of a durable step whose effect is made exactly once (docs/facets.md).

Every facet stays consistent (`PRAGMA integrity_check` is ok) and keeps every committed
row: the writer commits one numbered row per transaction, so the rows are 1..n, no gap.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, v1

pytestmark = pytest.mark.slow

WRITER = """
import os, time
from treadle_facets import connect

def handler(event, context):
    db = connect(event["facet"])
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS rows(i INTEGER PRIMARY KEY, pid INT, pad BLOB)")
    if event["op"] == "check":
        n, low, high = db.execute("SELECT count(*), min(i), max(i) FROM rows").fetchone()
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        return {"count": n, "min": low, "max": high, "integrity": check}
    deadline = time.monotonic() + event.get("seconds", 30)
    while time.monotonic() < deadline:
        with db:  # one numbered row per transaction
            db.execute("INSERT INTO rows(pid, pad) VALUES (?, randomblob(3000))", (os.getpid(),))
    return "not killed"
"""

LEDGER = """
import time
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from treadle_facets import connect, once, step_key


def pay(step_ctx):
    db = connect("ledger")
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS ledger(k TEXT, amount INT)")
    first_run = db.execute("SELECT count(*) FROM ledger").fetchone()[0] == 0

    def effect(db):
        db.execute("INSERT INTO ledger VALUES (?, ?)", (step_key(step_ctx), 10))
        return "paid"

    result = once(db, step_key(step_ctx), effect)
    if first_run:
        time.sleep(60)  # written, not yet checkpointed: the platform is killed here
    return result


@durable_execution
def handler(event, context: DurableContext):
    return {"pay": context.step(pay, name="pay")}
"""


def _host_db(server: ServerProcess, account: str, name: str) -> Path:
    return server.data_dir / "facets" / account / name / "db.sqlite"


def _rows(path: Path) -> tuple[int, int | None]:
    """(rows, pid of the writer) read from outside, as the platform would."""
    if not path.exists():
        return 0, None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        n, pid = db.execute("SELECT count(*), max(pid) FROM rows").fetchone()
        return int(n), pid
    except sqlite3.OperationalError:
        return 0, None
    finally:
        db.close()


def _write_until_killed(
    server: ServerProcess, lam: Any, account: str, kill: Any
) -> tuple[int, threading.Thread]:
    def invoke() -> None:
        event = {"op": "write", "facet": "log", "seconds": 60}
        # The server may be gone: the facet is what is judged.
        with contextlib.suppress(Exception):
            lam.invoke(FunctionName="writer", Payload=json.dumps(event).encode())

    thread = threading.Thread(target=invoke, daemon=True)
    thread.start()
    path = _host_db(server, account, "log")
    deadline = time.monotonic() + 60  # generous: the full suite loads the machine
    seen, pid = 0, None
    while time.monotonic() < deadline and seen < 300:
        seen, pid = _rows(path)
        time.sleep(0.02)
    assert seen >= 300 and pid is not None, "the writer never got going"
    kill(pid)
    return seen, thread


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.05)
    return False


def _check(lam: Any) -> dict[str, Any]:
    event = {"op": "check", "facet": "log"}
    resp = lam.invoke(FunctionName="writer", Payload=json.dumps(event).encode())
    return json.loads(resp["Payload"].read())  # type: ignore[no-any-return]


def _consistent(got: dict[str, Any], seen: int) -> None:
    assert got["integrity"] == "ok", got
    assert got["count"] >= seen and got["min"] == 1 and got["max"] == got["count"], got


def test_kill_9_of_the_worker_mid_write_leaves_the_facet_consistent(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    server.start()
    try:
        lam = client(server)
        account = deploy(lam, "writer", {"handler.py": WRITER}, durable=False)["FunctionArn"]
        account = account.split(":")[4]
        seen, thread = _write_until_killed(
            server, lam, account, lambda pid: os.kill(pid, signal.SIGKILL)
        )
        thread.join(timeout=60)
        _consistent(_check(lam), seen)
        status, raw = v1(server, "GET", "/v1/facets/log/export")
        assert status == 200 and raw[:15] == b"SQLite format 3"
    finally:
        server.stop()


def test_kill_9_of_the_server_mid_write_leaves_the_facet_consistent(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    server.start()
    lam = client(server)
    account = deploy(lam, "writer", {"handler.py": WRITER}, durable=False)["FunctionArn"]
    account = account.split(":")[4]
    seen, _ = _write_until_killed(server, lam, account, lambda _pid: server.kill())
    _, pid = _rows(_host_db(server, account, "log"))
    assert pid is not None and _gone(pid), "the worker outlived its platform"
    again = ServerProcess(server.data_dir)
    again.start()
    try:
        _consistent(_check(client(again)), seen)
    finally:
        again.stop()


def test_an_effect_made_through_once_happens_once_across_a_kill_9_mid_step(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data")
    server.start()
    lam = client(server)
    account = deploy(lam, "ledger", {"handler.py": LEDGER})["FunctionArn"].split(":")[4]
    resp = lam.invoke(FunctionName="ledger", InvocationType="Event", Payload=b"{}")
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    path = _host_db(server, account, "ledger")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                if db.execute("SELECT count(*) FROM ledger").fetchone()[0]:
                    break
            except sqlite3.OperationalError:
                pass
            finally:
                db.close()
        time.sleep(0.05)
    else:
        raise AssertionError("the step never wrote its effect")
    server.kill()  # the effect is committed; the step's result is not checkpointed

    again = ServerProcess(server.data_dir)
    again.start()
    try:
        lam = client(again)
        deadline = time.monotonic() + 60
        while lam.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING":
            assert time.monotonic() < deadline, "the execution never completed"
            time.sleep(0.1)
        ex = lam.get_durable_execution(DurableExecutionArn=arn)
        assert ex["Status"] == "SUCCEEDED", ex
        assert json.loads(ex["Result"]) == {"pay": "paid"}
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = db.execute("SELECT k, amount FROM ledger").fetchall()
        keys = db.execute("SELECT key FROM _treadle_once").fetchall()
        db.close()
        assert len(rows) == 1 and rows[0][1] == 10, rows  # once, not once per run
        assert rows[0][0].startswith(arn + "#") and keys == [(rows[0][0],)]
    finally:
        again.stop()
