"""A worker process, forked by the zygote: isolate it, import the handler, serve.

After the fork the worker becomes what a Lambda execution environment looks like from
inside: its own session and process group, then (reading its spec from its channel)
confined to its tenant (`confine`: own uid, only its own files visible), only the
function's environment, cwd and sys.path[0] at the code, Lambda's file descriptor
limit, a memory backstop. It then speaks the frame protocol with the server: one
`ready` after init, one `result` per `invoke`. The contract itself (context, errors,
logs) is in `contract` and `lambda_logging`; like them, this module imports only the
stdlib.

Logs go to file descriptors 1 and 2, which are one pipe read by the server: print(),
logging, C extensions and subprocesses all land there in the order they were written.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.machinery
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from treadle.adapters.sandbox import (
    cgroups,
    confine,
    contract,
    durable_channel,
    facet_link,
    lambda_logging,
    protocol,
)

# Thread stacks (8 MB each) count in RLIMIT_DATA without being resident; the RSS
# watchdog in the server enforces the real limit, RLIMIT_DATA only stops a runaway
# allocation faster than the watchdog samples.
DATA_SLACK_MB = 256
LAMBDA_NOFILE = 1024
_PR_SET_PDEATHSIG = 1

_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once in the zygote, not per fork


def _set_pdeathsig() -> None:
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _close_other_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _vm_data_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    return 0


def _shadowed(code_dir: Path, names: set[str]) -> set[str]:
    try:
        entries = set(os.listdir(code_dir))
    except OSError:
        return set()
    suffixes = importlib.machinery.all_suffixes()

    def shadows(name: str) -> bool:
        if any(f"{name}{suffix}" in entries for suffix in suffixes):
            return True
        # A directory without __init__ is a namespace portion: an installed package wins.
        return name in entries and any(
            (code_dir / name / f"__init__{suffix}").exists() for suffix in suffixes
        )

    return {name for name in names if shadows(name)}


def drop_shadowed(code_dir: Path, preloaded: Iterable[str]) -> list[str]:
    """Forget the zygote's imports if the function bundles any of those packages.

    On Lambda nothing but the runtime is imported before the handler, so a bundled
    package wins, and so do the runtime packages that depend on it. When one
    pre-imported package is shadowed, all of them are dropped: a bundled botocore must
    not meet the zygote's boto3.
    """
    preloaded = set(preloaded)
    shadowed = sorted(_shadowed(code_dir, preloaded))
    if shadowed:
        for module in list(sys.modules):
            if module.partition(".")[0] in preloaded:
                del sys.modules[module]
    return shadowed


class _Runtime:
    def __init__(
        self, chan: socket.socket, sink: lambda_logging.LogSink, spec: dict[str, Any]
    ) -> None:
        self.chan = chan
        self.sink = sink
        self.spec = spec
        # The durable channel's calls (SDK threads) and this loop share the socket.
        self.lock = threading.Lock()

    def init(self) -> Callable[..., Any] | None:
        error: dict[str, Any] | None = None
        handler = None
        oom = False
        try:
            handler = contract.load_handler(self.spec["handler"])
        except MemoryError:
            oom = True
        except Exception as exc:
            error = contract.fault_result(exc)
            lambda_logging.log_error(self.sink, error)
        _flush_std()
        protocol.send_frame(self.chan, {"t": "ready", "error": error, "oom": oom})
        return handler

    def serve(self, handler: Callable[..., Any]) -> int:
        while True:
            frame = protocol.recv_frame(self.chan)
            if frame is None:
                return 0
            header, body = frame
            cgroups.reap_children()  # killed when the last invocation ended
            lambda_logging.request_id = request_id = str(header["id"])
            # Lambda's per-invocation trace header, read by the SDKs and X-Ray.
            if header.get("trace"):
                os.environ["_X_AMZN_TRACE_ID"] = str(header["trace"])
            else:
                os.environ.pop("_X_AMZN_TRACE_ID", None)
            error: dict[str, Any] | None = None
            payload = b""
            oom = False
            try:
                event = contract.unmarshal(body)
                context = contract.LambdaContext(
                    request_id, int(header["deadline_ms"]), str(header["arn"]), self.sink
                )
                payload = contract.marshal(handler(event, context))
            except MemoryError:
                oom = True
            except Exception as exc:
                error = contract.fault_result(exc, request_id)
                lambda_logging.log_error(self.sink, error)
            _flush_std()
            with self.lock:
                protocol.send_frame(self.chan, {"t": "result", "error": error, "oom": oom}, payload)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _watch_parent(zygote_pid: int) -> None:
    _set_pdeathsig()
    if os.getppid() != zygote_pid:
        os._exit(1)  # the zygote died before prctl: nobody would kill this worker


def _detach(chan_fd: int, log_fd: int, zygote_pid: int) -> None:
    os.setsid()  # its own process group: a timeout kills the tenant's subprocesses too
    _watch_parent(zygote_pid)
    os.umask(0o022)  # Lambda's; the platform's own (077) is for the platform's files
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    _close_other_fds({0, 1, 2, chan_fd})
    for name in ("stdout", "stderr"):
        stream = lambda_logging.text_stream(1 if name == "stdout" else 2)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
    sys.argv = [os.path.abspath(__file__)]  # not the zygote's bootstrap arguments


def _before_spec() -> lambda_logging.LogSink:
    """What needs no spec, done while the worker waits for it (a spare waits long).

    A worker is a fork of the zygote: the first write to each page it shares with it
    copies the page, and these two walk many (every finder of the import system, every
    logger). After the spec they cost 1.2 ms of a cold start; done here, the same calls
    after the spec cost a tenth of that."""
    importlib.invalidate_caches()
    sink = lambda_logging.LogSink(1)
    lambda_logging.setup_logging(sink)
    # The zygote's (scrubbed) environment goes: the spec brings all of the function's.
    os.environ.clear()
    global _DATA_BASE
    _DATA_BASE = _vm_data_bytes()  # the zygote's image: what the function adds counts
    return sink


_DATA_BASE = 0  # the worker's data segment before its function (`_before_spec`)


def _first_frame(chan: socket.socket) -> dict[str, Any] | None:
    """The spec, or the frame that makes this worker a tenant's spare (`TenantSpares`)."""
    frame = protocol.recv_frame(chan)
    if frame is None:
        return None  # the server gave up on this worker before sending it
    header, _ = frame
    if header.get("t") not in ("spec", "spare"):
        raise protocol.ProtocolError(f"expected the spec, got {header.get('t')!r}")
    return header


def _receive_spec(chan: socket.socket) -> dict[str, Any] | None:
    header = _first_frame(chan)
    if header is not None and header["t"] != "spec":
        raise protocol.ProtocolError(f"expected the spec, got {header['t']!r}")
    return header


def _finish_spare(
    chan: socket.socket, spare: dict[str, Any], spec: dict[str, Any], caps: dict[str, Any]
) -> dict[str, Any]:
    """A spare's function: the spec names the same tenant (uid), its /tmp and code come
    as two mount fds right after it; returns the plan the spare was confined by."""
    plan: dict[str, Any] = spare["confine"]
    if (spec.get("confine") or {}).get("uid") != plan["uid"]:
        raise PermissionError("a spec for another tenant than this spare's")
    _, fds, _, _ = socket.recv_fds(chan, 1, 2)
    try:
        if len(fds) != 2:
            raise protocol.ProtocolError(f"expected two mount fds, got {len(fds)}")
        confine.finish_spare(plan, spec["code_dir"], spare["code_home"], (fds[0], fds[1]), caps)
    finally:
        for fd in fds:
            os.close(fd)
    return plan


def _enter(spec: dict[str, Any]) -> bool:
    """The function's environment, cwd and limits; whether the durable channel is on."""
    env: dict[str, str] = dict(spec["env"])
    # A switch for this runtime, not a variable of the function: no TREADLE_* reaches it.
    durable = env.pop(durable_channel.ENV_FLAG, None) == "1"
    os.environ.clear()
    os.environ.update(env)
    time.tzset()
    tempfile: Any = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile.tempdir = None  # re-read TMPDIR, which the zygote had cached
    code_dir = spec["code_dir"]
    os.chdir(code_dir)
    sys.path.insert(0, code_dir)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = LAMBDA_NOFILE if hard == resource.RLIM_INFINITY else min(LAMBDA_NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return durable


def _limit_memory(memory_mb: int) -> None:
    limit = (_DATA_BASE or _vm_data_bytes()) + ((memory_mb + DATA_SLACK_MB) << 20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def main(
    chan_fd: int,
    log_fd: int,
    zygote_pid: int,
    caps: dict[str, Any],
    preloaded: Iterable[str],
    on_environment: Callable[[], None],
) -> NoReturn:
    """Run as a worker until the server hangs up; never returns (the image is a fork)."""
    code = 70
    try:
        _detach(chan_fd, log_fd, zygote_pid)
        chan = socket.socket(fileno=chan_fd)
        sink = _before_spec()
        spec = _first_frame(chan)
        spare = None
        if spec is not None and spec["t"] == "spare":
            # A tenant's spare: confined as far as its tenant allows while it waits.
            spare = spec
            confine.apply_spare(spare["confine"], spare["code_home"], caps)
            spec = _receive_spec(chan)
        if spec is None:
            raise SystemExit(0)
        cgroups.limit(spec.get("resources"))  # while root: before the uid changes
        plan = spec.get("confine")
        if spare is not None:
            plan = _finish_spare(chan, spare, spec, caps)
            _watch_parent(zygote_pid)  # a change of uid clears the parent-death signal
        elif plan is not None:
            # Any failure raises: a worker that could not be confined never runs code.
            confine.apply(plan, spec["code_dir"], caps)
            _watch_parent(zygote_pid)  # a change of uid clears the parent-death signal
        durable = _enter(spec)
        drop_shadowed(Path(spec["code_dir"]), preloaded)
        on_environment()
        importlib.invalidate_caches()  # the code directory is new to the import system
        lambda_logging.set_level_from_env()  # the function's AWS_LAMBDA_LOG_LEVEL
        _limit_memory(int(spec["memory_mb"]))
        runtime = _Runtime(chan, sink, spec)
        facet_link.configure(runtime.chan, runtime.lock, confine.facets_dir(plan, caps))
        if durable:
            durable_channel.install(runtime.chan, runtime.lock)
        handler = runtime.init()
        # After an init failure awslambdaric exits; the next invocation starts afresh.
        code = 1 if handler is None else runtime.serve(handler)
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        _flush_std()
        os._exit(code)
