"""Server side of the zygote: start it, ask it for workers, learn how they exit."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import treadle
from treadle.adapters.sandbox import protocol

log = logging.getLogger(__name__)

_BOOT = (
    "import sys; sys.path.append(sys.argv[2]); "
    "from treadle.adapters.sandbox.zygote import main; main()"
)
# The directory `treadle` was imported from (a checkout's functions/, or site-packages):
# the zygote runs isolated (-I), so it is told where to import the platform from.
_SRC_ROOT = str(Path(treadle.__file__).resolve().parent.parent)
START_TIMEOUT_S = 60.0
SPAWN_TIMEOUT_S = 30.0


class ZygoteGone(Exception):
    """The zygote died (or never started); a new one may be started."""


class _ForkFailed(OSError):
    """The zygote is fine but could not create the worker (e.g. out of processes)."""


@dataclass(eq=False)
class WorkerProcess:
    """A worker as the zygote reported it: the pid, a pidfd to signal it, its exit."""

    pid: int
    pidfd: int
    tmp_dir: Path
    exited: threading.Event = field(default_factory=threading.Event)
    # Raw wait status; None when unknown (the zygote died before reporting it).
    status: int | None = None
    _fd_lock: threading.Lock = field(default_factory=threading.Lock)

    def kill(self) -> None:
        # pidfd: never a recycled pid, even if the zygote reaped this one already.
        with self._fd_lock, contextlib.suppress(OSError):
            if self.pidfd >= 0:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def running(self) -> bool:
        """Not ended, as the kernel sees it now (the zygote's report may lag)."""
        with self._fd_lock:
            if self.pidfd < 0 or self.exited.is_set():
                return False
            # A pidfd polls readable once the process has ended, before it is reaped.
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            return not poller.poll(0)

    def close(self) -> None:
        with self._fd_lock:
            fd, self.pidfd = self.pidfd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


class Zygote:
    def __init__(self, *, home: Path) -> None:
        self._home = home
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[Future[WorkerProcess], Path]] = {}
        self._workers: dict[int, WorkerProcess] = {}
        self._seq = 0
        self._dead = False
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.pid = 0
        self.preload_ms = 0.0
        self.caps: dict[str, Any] = {}  # what the host allows workers (`confine.probe`)

    def start(self) -> None:
        self._home.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "HOME": str(self._home),
        }
        # The cores the server could use before it kept itself on one. Imported here:
        # the zygote imports this module, and none of the server's outside the sandbox.
        from treadle import affinity

        cores = affinity.children_cores()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, str(theirs.fileno()), _SRC_ROOT, cores],
                env=env,
                cwd=self._home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                # Out of the terminal's process group: Ctrl-C is the server's to handle.
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._control = ours
        ours.settimeout(START_TIMEOUT_S)
        try:
            ready = protocol.recv_msg(ours)
        except (OSError, protocol.ProtocolError) as exc:
            self.stop()
            raise ZygoteGone(f"zygote did not start: {exc}") from exc
        if ready is None or ready[0].get("op") != "ready":
            self.stop()
            raise ZygoteGone("zygote did not start (see its stderr)")
        ours.settimeout(None)
        self.pid = int(ready[0]["pid"])
        self.preload_ms = float(ready[0]["preload_ms"])
        self.caps = dict(ready[0].get("caps") or {})
        log.info("sandbox zygote %d ready, preload %.0f ms", self.pid, self.preload_ms)
        self._reader = threading.Thread(target=self._read, name="sandbox-zygote", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return not self._dead and self._process is not None and self._process.poll() is None

    def spawn(self, chan_fd: int, log_fd: int, tmp_dir: Path) -> WorkerProcess:
        """A new worker on these descriptors; what it runs is sent over `chan_fd`.

        The zygote never sees a function's spec: its memory, which every later worker
        inherits, must hold no tenant's environment.
        """
        future: Future[WorkerProcess] = Future()
        with self._lock:
            if self._dead or self._control is None:
                raise ZygoteGone("zygote is not running")
            self._seq += 1
            seq = self._seq
            self._pending[seq] = (future, tmp_dir)
        try:
            with self._send_lock:
                protocol.send_msg(self._control, {"op": "spawn", "seq": seq}, [chan_fd, log_fd])
            return future.result(timeout=SPAWN_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            with self._lock:
                self._pending.pop(seq, None)
            if isinstance(exc, _ForkFailed):
                raise
            raise ZygoteGone(f"spawn failed: {exc}") from exc

    def _spawned(self, message: dict[str, Any], fds: list[int]) -> None:
        with self._lock:
            future, tmp_dir = self._pending.pop(int(message["seq"]), (None, None))
            if future is None or tmp_dir is None or message["op"] != "spawned" or len(fds) != 1:
                proc = None
            else:
                # Registered before anyone can hear of its exit: the zygote reports that
                # later on this same channel, which only this thread reads.
                proc = WorkerProcess(pid=int(message["pid"]), pidfd=fds[0], tmp_dir=tmp_dir)
                self._workers[proc.pid] = proc
        if proc is not None and future is not None:
            future.set_result(proc)
            return
        for fd in fds:
            os.close(fd)
        if future is not None:
            future.set_exception(_ForkFailed(f"zygote could not fork: {message.get('error')}"))

    def _read(self) -> None:
        control = self._control
        assert control is not None
        try:
            while True:
                received = protocol.recv_msg(control)
                if received is None:
                    break
                message, fds = received
                op = message.get("op")
                if op in ("spawned", "spawn_failed"):
                    self._spawned(message, fds)
                elif op == "exited":
                    self._exited(int(message["pid"]), int(message["status"]))
        except (OSError, protocol.ProtocolError, ValueError, KeyError):
            log.exception("sandbox zygote channel failed")
        finally:
            self._lost()

    def _exited(self, pid: int, status: int | None) -> None:
        with self._lock:
            proc = self._workers.pop(pid, None)
        if proc is None:
            return
        proc.status = status
        proc.exited.set()

    def _lost(self) -> None:
        """The zygote is gone: so are its workers (PR_SET_PDEATHSIG), make sure of it."""
        with self._lock:
            self._dead = True
            pending = [future for future, _ in self._pending.values()]
            self._pending.clear()
            workers = list(self._workers.values())
        for future in pending:
            future.set_exception(ZygoteGone("zygote exited"))
        for proc in workers:
            proc.kill()
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            self._exited(proc.pid, None)

    def stop(self, timeout: float = 10.0) -> None:
        """Kill every worker and the zygote; wait until they are gone."""
        control, process = self._control, self._process
        if control is not None:
            with contextlib.suppress(OSError), self._send_lock:
                protocol.send_msg(control, {"op": "shutdown"})
        if process is not None:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("sandbox zygote %d did not exit; killing it", process.pid)
                process.kill()
                process.wait()
        if control is not None:
            with contextlib.suppress(OSError):
                control.shutdown(socket.SHUT_RDWR)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=timeout)
        if self._reader is None:
            self._lost()
        if control is not None:
            control.close()
