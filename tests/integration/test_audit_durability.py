"""kill -9 the server during a burst of CreateFunction calls; restart on the same data
directory. A function's audit record is written in the function's own transaction, so
after the restart every function has its record, and no record claims a success whose
function is absent (docs/operating.md, "Audit")."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from support.server import ServerProcess, client, deploy, v1

PLAIN = "def handler(event, context):\n    return event\n"
WORKERS = 4


def _functions(lam: Any) -> set[str]:
    names: set[str] = set()
    kwargs: dict[str, Any] = {}
    while True:
        page = lam.list_functions(**kwargs)
        names |= {f["FunctionName"] for f in page["Functions"]}
        if not page.get("NextMarker"):
            return names
        kwargs = {"Marker": page["NextMarker"]}


def _succeeded_creates(server: ServerProcess) -> list[str]:
    names: list[str] = []
    marker = ""
    while True:
        query = "action=CreateFunction&outcome=succeeded&limit=1000"
        status, body = v1(server, "GET", f"/v1/audit?{query}{marker}")
        assert status == 200, body
        names += [r["resource"].rsplit(":", 1)[1] for r in body["records"]]
        if not body["nextMarker"]:
            return names
        marker = f"&marker={body['nextMarker']}"


def test_no_function_without_its_record_after_a_kill_during_creates(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    server.start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def burst(worker: int) -> None:
        lam = client(server, retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10)
        for i in range(10_000):
            if stop.is_set():
                return
            name = f"burst-{worker}-{i}"
            try:
                deploy(lam, name, {"handler.py": PLAIN}, durable=False)
            except (ClientError, BotoCoreError):
                return  # the server is gone
            acknowledged.append(name)

    try:
        threads = [threading.Thread(target=burst, args=(w,)) for w in range(WORKERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # mid-burst: calls are in flight
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert len(acknowledged) >= 40

        server.start()
        functions = _functions(client(server))
        recorded = _succeeded_creates(server)
        assert len(recorded) == len(set(recorded)), "one record per function"
        # Nothing acknowledged is lost, and the records are exactly the functions.
        assert set(acknowledged) <= functions
        assert set(recorded) == {name for name in functions if name.startswith("burst-")}
    finally:
        stop.set()
        server.stop()
