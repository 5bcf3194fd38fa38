"""The zygote: a pre-imported, single-threaded parent that forks one process per worker.

Started once by the server (`python -I -c ... treadle.adapters.sandbox.zygote`) with a
scrubbed environment. It imports what every worker would otherwise import at a cost
of hundreds of milliseconds (boto3, botocore's service data, the durable SDK), then
serves commands on a SOCK_SEQPACKET control socket (fd passed as argv[1]):

- ``{"op": "spawn", "seq"}`` with fds [worker channel, log pipe]: fork a worker;
  reply ``{"op": "spawned", "seq", "pid"}`` carrying a pidfd of the worker, which lets
  the server signal it without pid-reuse races. The worker reads what to run from its
  channel: no tenant's spec (environment) ever enters this process, whose memory
  every worker inherits.
- ``{"op": "shutdown"}`` (or the socket closing): kill every worker, reap, exit.

It reaps its children (it is a child subreaper, so orphaned grandchildren come back to
it too) and reports ``{"op": "exited", "pid", "status"}`` for workers: only the parent
of a process can learn its exit status. The server never forks itself: it is
multi-threaded, and its memory holds other tenants' data and platform secrets.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import logging
import os
import pkgutil
import select
import signal
import socket
import sys
import time
from typing import Any

from treadle.adapters.sandbox import confine, protocol, runtime

log = logging.getLogger(__name__)

PRELOAD = (
    "json",
    "logging",
    "decimal",
    "uuid",
    "datetime",
    "concurrent.futures",
    "urllib.request",
    "boto3",
    "boto3.session",
    "botocore.session",
    "botocore.client",
    "aws_durable_execution_sdk_python",
    "treadle_facets",
)
# Packages whose every submodule is imported: the handler will need most of them.
PRELOAD_TREES = ("aws_durable_execution_sdk_python",)
# Service data the durable SDK's Lambda client loads: ~80 ms of JSON parsing saved.
WARM_SERVICES = ("lambda",)
_PR_SET_CHILD_SUBREAPER = 36
_BOTOCORE_SESSION_CACHES = ("_profile", "_config", "_profile_map", "_credentials")


def _preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    for tree in PRELOAD_TREES:
        package = sys.modules[tree]
        for info in pkgutil.walk_packages(package.__path__, f"{tree}."):
            try:
                importlib.import_module(info.name)
            except Exception:  # an optional extra (e.g. a plugin's dependency) is absent
                log.debug("not preloading %s", info.name, exc_info=True)
    _warm_boto3()


def _warm_boto3() -> None:
    import boto3

    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    if session is None:
        return
    loader = session._session.get_component("data_loader")
    for service in WARM_SERVICES:
        loader.load_service_model(service, "service-2")
        loader.load_service_model(service, "endpoint-rule-set-1")
    for name in ("endpoints", "partitions", "sdk-default-configuration", "_retry"):
        loader.load_data(name)


def rebind_boto3_session() -> None:
    """Make the pre-built default boto3 session read the worker's environment.

    botocore caches the profile and config file it read when the session was created
    (here, in the zygote's empty environment); those caches are dropped so they are
    read again from the tenant's variables, as a session created lazily on Lambda
    would. The loaded service data, the expensive part, is kept.
    """
    boto3: Any = sys.modules.get("boto3")
    session = getattr(boto3, "DEFAULT_SESSION", None)
    if boto3 is None or session is None:
        return
    core = getattr(session, "_session", None)
    compatible = all(hasattr(core, attr) for attr in _BOTOCORE_SESSION_CACHES)
    if not compatible or "AWS_DATA_PATH" in os.environ:
        boto3.DEFAULT_SESSION = None  # let boto3 build one lazily, as usual
        return
    for attr in _BOTOCORE_SESSION_CACHES:
        setattr(core, attr, None)


class Zygote:
    def __init__(
        self, control: socket.socket, preloaded: frozenset[str], caps: dict[str, Any]
    ) -> None:
        self.control = control
        self.preloaded = preloaded
        self.caps = caps
        self.workers: set[int] = set()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self._wake_w)
        try:
            while True:
                watched: list[Any] = [self.control, self._wake_r]
                ready, _, _ = select.select(watched, [], [])
                if self._wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    self.reap()
                if self.control in ready:
                    received = protocol.recv_msg(self.control)
                    if received is None:
                        return
                    message, fds = received
                    if message.get("op") == "shutdown":
                        return
                    if message.get("op") == "spawn":
                        self.spawn(message, fds)
                    else:
                        for fd in fds:
                            os.close(fd)
        finally:
            self.shutdown()

    def spawn(self, message: dict[str, Any], fds: list[int]) -> None:
        seq = message.get("seq")
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            protocol.send_msg(self.control, {"op": "spawn_failed", "seq": seq, "error": "fds"})
            return
        chan_fd, log_fd = fds
        zygote_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(chan_fd)
            os.close(log_fd)
            protocol.send_msg(self.control, {"op": "spawn_failed", "seq": seq, "error": str(exc)})
            return
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                runtime.main(
                    chan_fd, log_fd, zygote_pid, self.caps, self.preloaded, rebind_boto3_session
                )
            finally:
                os._exit(70)
        os.close(chan_fd)
        os.close(log_fd)
        self.workers.add(pid)
        try:
            # The child cannot have been reaped yet: only this thread reaps.
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            os.kill(pid, signal.SIGKILL)
            protocol.send_msg(self.control, {"op": "spawn_failed", "seq": seq, "error": str(exc)})
            return
        try:
            protocol.send_msg(self.control, {"op": "spawned", "seq": seq, "pid": pid}, [pidfd])
        finally:
            os.close(pidfd)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.workers:
                self.workers.discard(pid)
                # Its process group may outlive it (subprocesses); the group id cannot be
                # reused while members remain.
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    protocol.send_msg(self.control, {"op": "exited", "pid": pid, "status": status})

    def shutdown(self) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.005)
                continue
            if pid in self.workers:
                self.workers.discard(pid)
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    if len(sys.argv) > 3 and sys.argv[3]:
        # The server keeps its own threads on one core (`treadle/affinity.py`); this
        # process and the workers it forks run on every core it was allowed.
        os.sched_setaffinity(0, {int(core) for core in sys.argv[3].split(",")})
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    caps = confine.probe()  # before the imports: its probe forks a small image
    started = time.perf_counter()
    before = {name.partition(".")[0] for name in sys.modules}
    _preload()
    after = {name.partition(".")[0] for name in sys.modules}
    preloaded = frozenset(after - before - set(sys.stdlib_module_names))
    # Objects that exist now are shared with every worker: keep the collector from
    # touching (and so copying) their pages after each fork.
    gc.freeze()
    ready = {
        "op": "ready",
        "pid": os.getpid(),
        "preload_ms": round((time.perf_counter() - started) * 1000, 1),
        "caps": caps,
    }
    protocol.send_msg(control, ready)
    Zygote(control, preloaded, caps).serve()


if __name__ == "__main__":
    main()
