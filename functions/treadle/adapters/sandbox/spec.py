"""What the sandbox is asked to run, what it answers, and the environment it gives."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RUNTIME_DIR = str(Path(__file__).resolve().parent)


@dataclass(frozen=True)
class SandboxFunction:
    key: str  # unique per function version + code
    code_dir: Path
    handler: str  # "module.func", "dir/module.func" or "pkg.module.func"
    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_mb: int
    timeout_s: float
    environment: Mapping[str, str]
    log_group: str
    # Whose code this is: its workers run confined to it (`identity.Confinement`).
    # None only for code the program embedding the sandbox trusts (its own tests).
    tenant: str | None = None
    # Size of the environment's /tmp (a tmpfs when the platform is root).
    ephemeral_storage_mb: int = 512


@dataclass(frozen=True)
class InvocationOutcome:
    request_id: str
    payload: bytes | None  # the handler's JSON result, when it returned
    error: dict[str, Any] | None  # Lambda's error payload, when it did not
    logs: list[str]
    started_at: float
    ended_at: float
    max_memory_kb: int = 0  # the worker's peak RSS (VmHWM) when the invocation ended
    init_ms: float | None = None  # a cold start's Init phase


def lambda_environment(fn: SandboxFunction, tmp_dir: Path, log_stream: str) -> dict[str, str]:
    """What a Lambda execution environment sees, and nothing of the server's."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    defaults = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "TMPDIR": str(tmp_dir),
        "HOME": str(tmp_dir),
    }
    reserved = {
        "LAMBDA_TASK_ROOT": os.path.abspath(fn.code_dir),
        "LAMBDA_RUNTIME_DIR": _RUNTIME_DIR,
        "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": fn.function_version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": fn.log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{version}",
        "_HANDLER": fn.handler,
    }
    # Lambda refuses reserved names in a function's configuration; here they just lose.
    return {**defaults, **fn.environment, **reserved}


def worker_spec(
    fn: SandboxFunction, tmp_dir: Path, confine: dict[str, Any] | None
) -> dict[str, Any]:
    """The first frame a new worker reads: what to run, with which environment, and how
    it confines itself (`confine.apply`)."""
    stream = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{fn.function_version}]"
    return {
        "t": "spec",
        "code_dir": os.path.abspath(fn.code_dir),
        "handler": fn.handler,
        "memory_mb": fn.memory_mb,
        "env": lambda_environment(fn, tmp_dir, stream + uuid.uuid4().hex),
        "confine": confine,
    }
