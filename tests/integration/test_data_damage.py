"""A damaged file in the data directory stops `treadle dev` at start: exit status 2 and
a message naming the file, what is wrong and the command that moves it aside; no
traceback. Once the file is back, the platform starts and its data is whole."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from support.server import ServerProcess, client, deploy
from support.workflows import WORKFLOW

PAGE = 4096


def _start_fails(data: Path) -> str:
    """`treadle dev` on `data`: it must refuse to start; its stderr."""
    command = [sys.executable, "-m", "treadle.cli", "dev", "--host", "127.0.0.1"]
    done = subprocess.run(
        [*command, "--port", "0", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "ready at" not in done.stdout
    return done.stderr


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _overwrite_root_page(table: str) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
        conn.close()
        with path.open("r+b") as handle:
            handle.seek((root - 1) * PAGE + 8)
            handle.write(b"\xff" * 16)  # the page's cell pointers point past its end

    return damage


def _flip_middle_byte(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x40]))


def test_damaged_files_stop_the_start_with_their_name_and_what_to_do(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = ServerProcess(data)
    srv.start()
    try:
        lam = client(srv)
        deploy(lam, "wf", {"handler.py": WORKFLOW})
        done = lam.invoke(FunctionName="wf", Payload=json.dumps({"n": 21}))
        arn = done["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    finally:
        srv.stop()
    # The function's code was committed to the tenant's Git repository: a pack.
    pack = next((data / "git" / "objects").rglob("*.pack"))
    cases: list[tuple[Path, Callable[[Path], None], str]] = [
        (data / "treadle.db", _truncate, "database disk image is malformed"),
        (data / "treadle.db", _overwrite_root_page("executions"), "treadle.db: "),
        (data / "git" / "refs.db", _truncate, "refs.db: "),
        (pack, _flip_middle_byte, "does not match its checksum"),
        (pack, _truncate, "does not match its checksum"),
    ]
    for path, damage, what in cases:
        intact = path.read_bytes()
        damage(path)
        stderr = _start_fails(data)
        assert f"{path}: " in stderr and what in stderr, stderr
        assert f"mkdir -p {data}.damaged" in stderr and f" mv {path}" in stderr, stderr
        assert "restore it from a backup" in stderr
        path.write_bytes(intact)

    srv.start()
    try:
        execution = client(srv).get_durable_execution(DurableExecutionArn=arn)
        assert execution["Status"] == "SUCCEEDED"
        assert json.loads(execution["Result"]) == {"first": 42}
    finally:
        srv.stop()
