"""`treadle dev --processes 2`: two server processes on one data directory and port.

Both serve the API and each drives the executions it owns; a callback answered in one
wakes the other; a process killed with SIGKILL is started again and its executions
carry on; a SIGKILL of the first takes the others with it, and a restart on the same
directory recovers everything; SIGTERM stops them all.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from support.processes import alive
from support.server import ServerProcess, client, deploy
from support.workflows import WORKFLOW
from treadle.domain.partition import owner
from treadle.settings import ENV_PIN_CORES, ENV_PROCESS_INDEX, ENV_PROCESSES


def _others(first_pid: int) -> list[int]:
    """The pids of the processes the first started (found by what it set for them)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(f"{ENV_PROCESS_INDEX}=".encode()) for v in environ) and any(
            v.endswith(f":{first_pid}".encode()) for v in environ
        ):
            found.append(int(entry))
    return found


def _cores(pid: int) -> set[frozenset[int]]:
    """The core sets of `pid`'s threads (one set if they all share one)."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found.add(frozenset(os.sched_getaffinity(int(tid))))
        except OSError:
            continue  # ended meanwhile
    return found


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if entry.isdigit() and int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            kids.append(int(entry))
    return kids


def _until(what: str, check: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def _start(srv: ServerProcess, payload: dict[str, Any], name: str) -> str:
    # A client of its own: a new connection, which the kernel gives to either process.
    answer = client(srv).invoke(
        FunctionName="wf",
        Payload=json.dumps(payload),
        InvocationType="Event",
        DurableExecutionName=name,
    )
    return str(answer["DurableExecutionArn"])


def _callback_of(lam: Any, arn: str) -> str | None:
    for event in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]:
        if event["EventType"] == "CallbackStarted":
            return str(event["CallbackStartedDetails"]["CallbackId"])
    return None


def _status(lam: Any, arn: str) -> str:
    return str(lam.get_durable_execution(DurableExecutionArn=arn)["Status"])


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProcess]:
    """`treadle dev --processes 2` (test clock), with WORKFLOW deployed as `wf`."""
    server = ServerProcess(
        tmp_path / "data", wait_time_scale=0.01, env={ENV_PROCESSES: "2", ENV_PIN_CORES: "true"}
    )
    server.start()
    try:
        deploy(client(server), "wf", {"handler.py": WORKFLOW})
        yield server
    finally:
        server.stop()


def test_two_processes_share_the_work_and_outlive_a_crash_of_either(srv: ServerProcess) -> None:
    assert srv.proc is not None
    first = srv.proc.pid
    (second,) = _others(first)  # ready before the first says so
    lam = client(srv)
    all_cores = frozenset(os.sched_getaffinity(0))
    if len(all_cores) >= 2:
        # Each process's threads on a core of their own (`treadle/affinity.py`)...
        (mine,) = _cores(first)
        (theirs,) = _cores(second)
        assert len(mine) == 1 and len(theirs) == 1 and mine != theirs
        # ...and what they start (the zygote, hence its workers) on every core.
        zygotes = [p for p in _children(first) if p != second] + _children(second)
        assert len(zygotes) >= 2
        assert all(_cores(pid) == {all_cores} for pid in zygotes)

    # Both take starts, each with ids it owns; waits and steps run in their owner.
    arns = [_start(srv, {"n": i, "wait": 1}, f"w{i}") for i in range(24)]
    assert {owner(arn, 2) for arn in arns} == {0, 1}
    for arn in arns:
        _until(f"{arn} done", lambda arn=arn: _status(lam, arn) == "SUCCEEDED")
    sync = [
        json.loads(
            client(srv).invoke(FunctionName="wf", Payload=b'{"n": 5, "wait": 1}')["Payload"].read()
        )
        for _ in range(6)
    ]
    assert sync == [{"first": 10}] * 6

    # Callbacks answered through whichever process: the owner is woken to go on.
    waiting = [_start(srv, {"n": i, "callback": True}, f"c{i}") for i in range(12)]
    assert {owner(arn, 2) for arn in waiting} == {0, 1}
    callbacks = {arn: _until("callback", lambda arn=arn: _callback_of(lam, arn)) for arn in waiting}
    half = waiting[:6]
    for arn in half:
        client(srv).send_durable_execution_callback_success(CallbackId=callbacks[arn], Result=b"ok")
    for arn in half:
        _until(f"{arn} done", lambda arn=arn: _status(lam, arn) == "SUCCEEDED", 10)

    # The second process dies: it is started again, and its executions go on.
    os.kill(second, signal.SIGKILL)
    (again,) = _until(
        "the second process restarted", lambda: [p for p in _others(first) if p != second]
    )
    assert again != second
    if len(all_cores) >= 2:  # started by a thread on the first's core: it takes its own
        _until("the restarted process on its core", lambda: _cores(again) == {theirs})
    rest = waiting[6:]
    for arn in rest[:3]:
        client(srv).send_durable_execution_callback_success(CallbackId=callbacks[arn], Result=b"ok")
    for arn in rest[:3]:
        _until(
            f"{arn} done after a restart of one",
            lambda arn=arn: _status(lam, arn) == "SUCCEEDED",
        )

    # The first dies: the others go with it (nothing runs unsupervised).
    srv.kill()
    _until(
        "the others gone with the first",
        lambda: not _others(first) and not alive(again),
        10,
    )

    # Started again on the same directory: every execution is still there.
    srv.start()
    lam = client(srv)
    for arn in rest[3:]:
        lam.send_durable_execution_callback_success(CallbackId=callbacks[arn], Result=b"ok")
    for arn in rest[3:]:
        _until(
            f"{arn} done after a restart of all",
            lambda arn=arn: _status(lam, arn) == "SUCCEEDED",
        )
    done = lam.get_durable_execution(DurableExecutionArn=rest[-1])
    assert json.loads(done["Result"]) == {"first": 2 * 11, "approval": "ok"}

    # SIGTERM stops all of them, each in order.
    assert srv.proc is not None
    first = srv.proc.pid
    others = _others(first)
    assert len(others) == 1
    srv.stop()
    assert srv.proc.returncode == 0, srv.log_path.read_text()[-3000:]
    assert not any(alive(pid) for pid in others)


COUNT = 300


def _start_until_taken(srv: ServerProcess, n: int, deadline: float) -> str:
    """Start execution `k<n>`, again and again through crashes: a start is idempotent by
    its name, so one that committed before its answer was lost is found, not doubled."""
    while True:
        try:
            return _start(srv, {"n": n, "wait": 1}, f"k{n}")
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_kill_9_of_either_process_under_load_loses_and_doubles_nothing(
    srv: ServerProcess,
) -> None:
    assert srv.proc is not None
    first = srv.proc.pid
    deadline = time.monotonic() + 90
    with ThreadPoolExecutor(6) as pool:
        starts = [pool.submit(_start_until_taken, srv, n, deadline) for n in range(COUNT)]
        time.sleep(0.4)
        (second,) = _others(first)
        os.kill(second, signal.SIGKILL)  # mid-load: its invocations die with it
        time.sleep(0.8)
        taken = sum(f.done() for f in starts)
        port = srv.port
        srv.kill()  # and then all of them
        srv.start(port=port)
        arns = [f.result() for f in starts]
    lam = client(srv)
    for n, arn in enumerate(arns):
        _until(f"k{n} done", lambda arn=arn: _status(lam, arn) == "SUCCEEDED", 60)
        done = lam.get_durable_execution(DurableExecutionArn=arn)
        assert json.loads(done["Result"]) == {"first": 2 * n}
    listed = lam.list_durable_executions_by_function(FunctionName="wf", MaxItems=1000)
    assert len(listed["DurableExecutions"]) == COUNT  # none lost, none started twice
    assert 0 < taken < COUNT, taken  # the kills came while starts were under way
