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


def test_every_option_says_what_it_does_and_its_default() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "treadle.cli", "dev", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    # argparse wraps lines: one option's text runs until the next option.
    text = " ".join(proc.stdout.split())
    options = ["--host", "--port", "--data-dir", "--backend", "--insecure-multi-tenant"]
    options.append("--wait-time-scale")
    for option, following in zip(options, [*options[1:], None], strict=True):
        start = text.index(f" {option} ", text.index("options:"))
        part = text[start : text.index(f" {following} ", start + 1) if following else None]
        assert "(default: $TREADLE_" in part, part


def test_ctrl_c_stops_the_platform_without_a_traceback(tmp_path: Path) -> None:
    import os
    import signal
    import time

    # Ctrl-C in a terminal signals the whole process group: the server, its zygote and
    # workers alike.
    proc = subprocess.Popen(
        [sys.executable, "-m", "treadle.cli", "dev", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("Treadle is ready") or not line:
            break
    assert any(line.startswith("Treadle is ready") for line in lines), lines
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert "Traceback" not in "".join(lines) + rest
