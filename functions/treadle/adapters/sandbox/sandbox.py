"""Parent side of the local sandbox: warm worker processes per function version.

Workers are forked by multiprocessing's fork server, which is started once with a
scrubbed environment and pre-imports the durable SDK and boto3: a new function version
costs a fork, not an interpreter start. The server process itself (threads, sockets,
secrets) is never forked.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from treadle.adapters.sandbox import worker

log = logging.getLogger(__name__)

PRELOAD = [
    "json",
    "logging",
    "boto3",
    "botocore.session",
    "aws_durable_execution_sdk_python",
    "aws_durable_execution_sdk_python.execution",
    "aws_durable_execution_sdk_python.context",
    "treadle.adapters.sandbox.worker",
]
_SAFE_ENV = ("PATH", "LANG", "LC_ALL", "PYTHONHASHSEED")


@dataclass(frozen=True)
class SandboxFunction:
    key: str
    code_dir: Path
    handler: str
    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_mb: int
    timeout_s: float
    environment: Mapping[str, str]
    log_group: str


@dataclass(frozen=True)
class InvocationOutcome:
    request_id: str
    payload: bytes | None
    error: dict[str, Any] | None
    logs: list[str]
    started_at: float
    ended_at: float


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    tmp: Path
    used: float = field(default_factory=time.monotonic)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)


class LocalSandbox:
    def __init__(
        self, *, work_dir: Path, max_warm_per_function: int = 4, max_workers: int = 256
    ) -> None:
        self._work_dir = work_dir
        self._max_warm = max_warm_per_function
        self._max_workers = max_workers
        self._idle: dict[str, list[_Worker]] = {}
        self._busy = 0
        self._lock = threading.Lock()
        self._ctx: ForkServerContext | None = None

    def start(self) -> None:
        if self._ctx is not None:
            return
        self._work_dir.mkdir(parents=True, exist_ok=True)
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        # The fork server inherits the environment it is started with: start it with
        # a scrubbed one so no platform secret ever reaches a worker's process image.
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update({k: saved[k] for k in _SAFE_ENV if k in saved})
            from multiprocessing import forkserver

            forkserver.ensure_running()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self._ctx = ctx

    def _spawn(self, fn: SandboxFunction) -> _Worker:
        assert self._ctx is not None, "sandbox not started"
        tmp = Path(os.path.realpath(self._work_dir)) / f"w-{os.urandom(6).hex()}"
        tmp.mkdir(mode=0o700)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(fn.code_dir),
            "LAMBDA_RUNTIME_DIR": str(Path(worker.__file__).parent),
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": fn.function_version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": fn.log_group,
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "_HANDLER": fn.handler,
            "TMPDIR": str(tmp),
            "HOME": str(tmp),
            **fn.environment,
        }
        spec = {
            "code_dir": str(fn.code_dir),
            "handler": fn.handler,
            "function_name": fn.function_name,
            "function_version": fn.function_version,
            "invoked_function_arn": fn.invoked_function_arn,
            "memory_mb": fn.memory_mb,
            "log_group": fn.log_group,
            "env": env,
        }
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=worker.main, args=(child, spec), daemon=True)
        process.start()
        child.close()
        return _Worker(process=process, conn=parent, tmp=tmp)

    def _acquire(self, fn: SandboxFunction) -> _Worker:
        with self._lock:
            idle = self._idle.get(fn.key)
            while idle:
                w = idle.pop()
                if w.process.is_alive():
                    self._busy += 1
                    return w
                w.kill()
            self._evict_lru_locked()
            self._busy += 1
        return self._spawn(fn)

    def _evict_lru_locked(self) -> None:
        total = self._busy + sum(len(v) for v in self._idle.values())
        while total >= self._max_workers:
            candidates = [(w.used, k, w) for k, ws in self._idle.items() for w in ws]
            if not candidates:
                return
            _, key, oldest = min(candidates, key=lambda c: c[0])
            self._idle[key].remove(oldest)
            oldest.kill()
            total -= 1

    def _release(self, fn: SandboxFunction, w: _Worker, healthy: bool) -> None:
        with self._lock:
            self._busy -= 1
            idle = self._idle.setdefault(fn.key, [])
            if healthy and len(idle) < self._max_warm:
                w.used = time.monotonic()
                idle.append(w)
                return
        w.kill()

    def invoke(self, fn: SandboxFunction, payload: bytes, request_id: str) -> InvocationOutcome:
        started = time.time()
        w = self._acquire(fn)
        healthy = False
        try:
            try:
                w.conn.send((request_id, payload, fn.timeout_s))
                ready = w.conn.poll(fn.timeout_s)
                reply = w.conn.recv() if ready else None
            except (EOFError, OSError, BrokenPipeError):
                ready, reply = True, None
            if not ready:
                w.kill()
                error = {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"RequestId: {request_id} Error: Task timed out after "
                    f"{fn.timeout_s:.2f} seconds",
                }
                return InvocationOutcome(request_id, None, error, [], started, time.time())
            if reply is None:
                w.process.join(timeout=5)
                code = w.process.exitcode
                reason = (
                    f"signal: {-code}" if code is not None and code < 0 else f"exit status {code}"
                )
                if code == 137 or code == -9:
                    reason = "signal: killed"
                error = {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: "
                    f"{reason}",
                }
                return InvocationOutcome(request_id, None, error, [], started, time.time())
            healthy = "error" not in reply or reply["error"].get("errorType") not in (
                "Runtime.OutOfMemory",
                "Runtime.ImportModuleError",
                "Runtime.HandlerNotFound",
            )
            return InvocationOutcome(
                request_id,
                reply.get("payload"),
                reply.get("error"),
                reply.get("logs", []),
                started,
                time.time(),
            )
        finally:
            self._release(fn, w, healthy)

    def evict(self, key: str) -> None:
        with self._lock:
            workers = self._idle.pop(key, [])
        for w in workers:
            w.kill()

    def close(self) -> None:
        with self._lock:
            workers = [w for ws in self._idle.values() for w in ws]
            self._idle.clear()
        for w in workers:
            w.kill()
