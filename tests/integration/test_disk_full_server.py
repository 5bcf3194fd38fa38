"""`treadle dev` on a data directory that fills up: writes fail with a clear, retryable
error (no stack trace, nothing half written), what was there stays readable, and the
platform carries on by itself once space is freed, without a restart.

The data directory is a real 16 MB tmpfs (mounting needs root: skipped otherwise).
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from support.server import ServerProcess, client, deploy, v1
from support.tmpfs import fill, small_tmpfs
from support.workflows import WORKFLOW
from treadle.platform.integrity import check_data_dir

PLAIN = "def handler(event, context):\n    return {'ok': True}\n"
# Room the test takes before the workload and gives back at the end.
RESERVE_BYTES = 8 * 1024 * 1024


def _big_files(seed: int, size: int = 700_000) -> dict[str, str]:
    # Random bytes do not compress: the zip, its unpacked copy and its Git pack are big.
    blob = base64.b64encode(os.urandom(size) + seed.to_bytes(4, "big")).decode()
    return {"handler.py": PLAIN, "blob.txt": blob}


def _big_commit(size: int = 600_000) -> dict[str, Any]:
    blob = base64.b64encode(os.urandom(size)).decode()
    return {"message": "big", "files": {"blob.bin": {"content": blob, "encoding": "base64"}}}


def _arn(response: dict[str, Any]) -> str:
    return str(response["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])


def _assert_storage_full(exc: ClientError, data: Path) -> None:
    error = exc.response["Error"]
    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503, exc.response
    assert error["Code"] == "ServiceException"
    assert error["Message"].startswith("No space left for the platform's data in ")
    assert str(data) in error["Message"]
    assert "Free space there and retry" in error["Message"]
    assert "Traceback" not in error["Message"]


def _finished(lam: Any, arn: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        execution = lam.get_durable_execution(DurableExecutionArn=arn)
        if execution["Status"] != "RUNNING":
            assert execution["Status"] == "SUCCEEDED", execution
            return json.loads(execution["Result"])
        time.sleep(0.2)
    raise AssertionError(f"{arn} still running {timeout_s} s after space came back")


def _reserve(data: Path) -> Path:
    reserve = data / "reserve"
    fd = os.open(reserve, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"\0" * RESERVE_BYTES)
    finally:
        os.close(fd)
    return reserve


def _temporaries(data: Path) -> list[Path]:
    skip = {"sandbox"}  # the sandbox's own work area: workers' scratch, not our writes
    found = []
    for dirpath, dirs, files in os.walk(data):
        dirs[:] = [d for d in dirs if d not in skip]
        found += [Path(dirpath) / n for n in [*dirs, *files] if n.startswith(".tmp-")]
    return found


def test_a_full_data_directory_fails_writes_clearly_and_recovers_when_space_returns(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "data", "16m") as data:
        srv = ServerProcess(data)
        srv.start()
        try:
            _fill_and_recover(srv, data)
        finally:
            srv.stop()
        # Nothing half written: every SQLite file and pack is whole.
        check_data_dir(data)


def _fill_and_recover(srv: ServerProcess, data: Path) -> None:
    # One attempt: the test sees each refusal (SDKs retry a 503 by themselves).
    lam = client(srv, retries={"max_attempts": 1, "mode": "standard"})
    deploy(lam, "wf", {"handler.py": WORKFLOW})
    before = lam.invoke(FunctionName="wf", Payload=json.dumps({"n": 1}))
    kept = _arn(before)
    status, body = v1(srv, "POST", "/v1/repos", {"name": "notes"})
    assert status == 201, body
    # An execution in flight when the disk fills: its wait ends while nothing can be
    # written. It must carry on by itself once space is back.
    in_flight = _arn(
        lam.invoke(FunctionName="wf", InvocationType="Event", Payload=b'{"n": 5, "wait": 8}')
    )
    # Its wait ends after the workload below has filled the disk (about 3 s); two more
    # seconds for its wake-ups to meet the full disk.
    waited_until = time.monotonic() + 10
    reserve = _reserve(data)

    # The workload: deploys of big zips and executions with big payloads, in turn,
    # until both are refused.
    deployed: list[str] = []
    started: list[str] = []
    refused: list[ClientError] = []
    full: list[ClientError] = []
    for i in range(60):
        if not refused:
            try:
                deploy(lam, f"big-{i}", _big_files(i, 250_000), durable=False)
                deployed.append(f"big-{i}")
            except ClientError as exc:
                refused.append(exc)
        if not full:
            try:
                payload = json.dumps({"n": i, "pad": "x" * 150_000})
                # Asynchronous: a synchronous start the disk fills under would hold the
                # loop for the whole wait of a synchronous Invoke (50 s).
                started.append(
                    _arn(lam.invoke(FunctionName="wf", InvocationType="Event", Payload=payload))
                )
            except ClientError as exc:
                full.append(exc)
        if refused and full:
            break
    assert refused and full, "16 MB never filled up"
    assert deployed and started, "nothing fit before the disk filled: the test measured nothing"
    _assert_storage_full(refused[0], data)
    _assert_storage_full(full[0], data)

    # Every last byte: the in-flight execution's wait ends on a disk with no room.
    topped = fill(data, "topped")
    status, body = v1(srv, "POST", "/v1/repos/notes/commits", _big_commit())
    assert status == 503, body
    assert body["error"]["code"] == "ServiceException" and body["error"]["retryable"]
    assert body["error"]["message"].startswith(f"No space left for the platform's data in {data}")
    status, body = v1(srv, "GET", "/v1/repos/notes")
    assert status == 200, body

    # What was there before stays whole and readable while the disk is full.
    execution = lam.get_durable_execution(DurableExecutionArn=kept)
    assert execution["Status"] == "SUCCEEDED" and json.loads(execution["Result"]) == {"first": 2}
    events = lam.get_durable_execution_history(DurableExecutionArn=kept)["Events"]
    assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
    names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert names >= {"wf", *deployed}
    assert not any(f"big-{i}" in names for i in range(len(deployed), len(deployed) + 2))
    assert _temporaries(data) == []

    while time.monotonic() < waited_until:
        time.sleep(0.2)
    assert lam.get_durable_execution(DurableExecutionArn=in_flight)["Status"] == "RUNNING"
    assert "No space left" in srv.log_path.read_text()  # its wake-up failed, and said why

    # Space comes back: new work succeeds, without a restart.
    reserve.unlink()
    topped.unlink()
    deploy(lam, "after", _big_files(99, 200_000), durable=False)
    assert json.loads(lam.invoke(FunctionName="after", Payload=b"{}")["Payload"].read()) == {
        "ok": True
    }
    status, body = v1(srv, "POST", "/v1/repos/notes/commits", _big_commit(200_000))
    assert status == 201, body
    again = lam.invoke(FunctionName="wf", Payload=json.dumps({"n": 21, "pad": "y" * 200_000}))
    assert json.loads(again["Payload"].read()) == {"first": 42}
    # A start the disk filled under (accepted, then its invocation's commits refused)
    # carries on by itself too, as the in-flight one does.
    for arn in [kept, *started]:
        _finished(lam, arn)
    assert _finished(lam, in_flight) == {"first": 10}
    for name in deployed:  # unpacked on first use: that needed space too
        assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    assert srv.proc is not None and srv.proc.poll() is None
