"""Schedules across restarts of a real `treadle dev`: the firings missed while it was down
run when it comes back (as `catchUp` says), and a kill -9 in the middle of them starts
no fire time twice.

"Down for three hours" is made by moving the stored next fire time three hours back
while the server is stopped: nobody waits for a cron hour.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, v1
from treadle.adapters.sqlite.schedules import SqliteScheduleStore
from treadle.domain.schedules import fire_name

TENANT = "123456789012"  # the tenant `treadle dev` makes
HOUR = 3_600_000
ECHO = """
from aws_durable_execution_sdk_python import durable_execution


@durable_execution
def handler(event, context):
    return event
"""


def names(lam: Any) -> list[str]:
    found = lam.list_durable_executions_by_function(FunctionName="echo", MaxItems=1000)
    return sorted(ex["DurableExecutionName"] for ex in found["DurableExecutions"])


@pytest.mark.slow
def test_missed_firings_run_at_restart_and_a_kill_fires_nothing_twice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServerProcess(data)
    first.start()
    try:
        deploy(client(first), "echo", {"handler.py": ECHO})
        body = {
            "name": "hourly", "cron": "0 * * * *", "function": "echo", "input": {"k": 1},
            "catchUp": "all", "overlap": "allow",
        }  # fmt: skip
        status, made = v1(first, "POST", "/v1/schedules", body)
        assert status == 201, made
    finally:
        first.stop()

    now = time.time_ns() // 1_000_000
    top = now - now % HOUR
    back = top - 3 * HOUR
    store = SqliteScheduleStore(data / "schedules.db")
    try:
        stored = store.get(TENANT, "hourly")
        store.replace(stored.model_copy(update={"next_fire_ms": back, "due_ms": back}))
    finally:
        store.close()
    expected = sorted(fire_name("hourly", back + i * HOUR) for i in range(4))

    second = ServerProcess(data)
    second.start()
    try:
        lam = client(second)
        deadline = time.monotonic() + 60
        while not names(lam):  # the scheduler thread's first look, at start
            assert time.monotonic() < deadline, "no missed firing ran"
            time.sleep(0.01)
    finally:
        second.kill()  # maybe between the starts and the schedule's record of them

    third = ServerProcess(data)
    third.start()
    try:
        lam = client(third)
        deadline = time.monotonic() + 60
        while True:
            _, shown = v1(third, "GET", "/v1/schedules/hourly")
            if shown["nextFireAt"] == top + HOUR:
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.05)
        assert names(lam) == expected  # each missed hour once, whatever the kill cut
        fired = [f["fireAt"] for f in shown["recentFirings"] if f["outcome"] == "started"]
        assert fired == [back + i * HOUR for i in range(4)]
    finally:
        third.stop()
