"""A `treadle dev` subprocess, started and stopped as a user would, and boto3 clients for it.

This is a copy of tests/support/server.py's approach rather than an import of it: the
benchmarks must not break when the test helpers change, and they need things the tests
do not (a death signal so a killed benchmark never leaves a server behind, a drained
stdout, removal of the data directory).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from benchmarks import procfs
from treadle.tenancy.credentials import read_profile

REGION = "us-east-1"
READY_TIMEOUT_S = 180.0  # a traced server (the soak's --tracemalloc) on a busy machine is slow
_PR_SET_PDEATHSIG = 1
# Resolved here, not in the child: loading a library between fork and exec can deadlock.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the benchmark dies (even by SIGKILL),
    # the kernel sends the server SIGTERM, so no server outlives its benchmark.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class BenchServer:
    """One server with a fresh data directory. Start it from the main thread only:
    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits."""

    def __init__(
        self,
        *,
        keep_data: bool = False,
        module: str = "treadle.cli",
        env: dict[str, str] | None = None,
    ) -> None:
        self.module = module  # `benchmarks.traced_server` for the soak's --tracemalloc
        self.env = env
        self.root = Path(tempfile.mkdtemp(prefix="treadle-bench-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self.keep_data = keep_data
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> str:
        cmd = [sys.executable, "-m", self.module, "dev", "--host", "127.0.0.1", "--port", "0"]
        cmd += ["--data-dir", str(self.data_dir)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            preexec_fn=_die_with_parent,
            env=None if self.env is None else os.environ | self.env,
        )
        log.close()
        assert self.proc.stdout is not None
        out = self.proc.stdout
        sel = selectors.DefaultSelector()
        sel.register(out, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT_S
        buf = b""
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.5):
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(out.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if b"ready at " in buf and b"\n" in buf.split(b"ready at ", 1)[1]:
                self.url = buf.split(b"ready at ", 1)[1].split()[0].decode()
                sel.close()
                # A full stdout pipe would block the server: keep draining it.
                threading.Thread(target=self._drain, args=(out,), daemon=True).start()
                return self.url
        sel.close()
        self.stop()
        raise RuntimeError(f"treadle dev did not become ready; see {self.log_path}")

    def _drain(self, out: Any) -> None:
        with self.log_path.open("ab") as log:
            for line in iter(out.readline, b""):
                log.write(line)

    def stop(self, *, keep_log: bool = False) -> None:
        """SIGTERM (the server closes its sandbox), then SIGKILL whatever is left."""
        if self.proc is None:
            return
        family = procfs.tree(self.proc.pid) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in family[1:]:
            # Only pids that were this server's descendants a moment ago.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None
        if self.keep_data:
            return
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if not keep_log:
            shutil.rmtree(self.root, ignore_errors=True)

    def disk_mib(self) -> float:
        total = 0
        for path in self.data_dir.rglob("*"):
            try:
                if path.is_file():
                    total += path.stat().st_size
            except OSError:
                continue
        return total / 2**20

    def __enter__(self) -> BenchServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def credentials(srv: BenchServer) -> tuple[str, str]:
    """The default tenant's key pair, as `treadle dev` wrote it to its data dir."""
    found = read_profile(srv.data_dir / "credentials", "treadle")
    if found is None:
        raise RuntimeError(f"no credentials in {srv.data_dir}: is the server started?")
    return found["aws_access_key_id"], found["aws_secret_access_key"]


def client(srv: BenchServer, *, pool: int = 10, read_timeout: float = 120.0) -> Any:
    """A Lambda client with retries off: a retry would hide a failure inside a latency.

    It signs as the default tenant, with the keys `treadle dev` wrote to its data dir.
    """
    key_id, secret = credentials(srv)
    session = boto3.session.Session()
    return session.client(
        "lambda",
        endpoint_url=srv.url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            retries={"total_max_attempts": 1},
            read_timeout=read_timeout,
            connect_timeout=10,
            max_pool_connections=pool,
            tcp_keepalive=True,
        ),
    )


def zip_files(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def deploy(
    lam: Any, name: str, files: dict[str, str], handler: str, *, durable: bool = True
) -> None:
    params: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Role": "arn:aws:iam::123456789012:role/treadle-bench",
        "Handler": handler,
        "Code": {"ZipFile": zip_files(files)},
        "Timeout": 60,
        "MemorySize": 256,
    }
    if durable:
        params["DurableConfig"] = {"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1}
    lam.create_function(**params)
