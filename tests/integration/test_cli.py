"""`treadle dev` refuses bad settings and busy ports with a clear message, not a trace."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def _dev(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "treadle.cli", "dev", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_busy_port_is_reported_plainly(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = _dev("--host", "127.0.0.1", "--port", str(port), data_dir=tmp_path / "d")
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_settings_are_reported_plainly(tmp_path: Path) -> None:
    proc = _dev("--port", "0", "--wait-time-scale", "5", data_dir=tmp_path / "d")
    assert proc.returncode == 2
    assert "invalid settings" in proc.stderr and "wait_time_scale" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_invalid_environment_variable_is_named(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "TREADLE_INVOKE_CONCURRENCY": "none", "TREADLE_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "treadle.cli", "dev", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invoke_concurrency (TREADLE_INVOKE_CONCURRENCY)" in proc.stderr
    assert "Traceback" not in proc.stderr
