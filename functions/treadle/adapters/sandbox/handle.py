"""Server side of one worker: its channel, its log pipe, its memory, its end."""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any, Literal

from treadle.adapters.sandbox import protocol
from treadle.adapters.sandbox.cgroups import WorkerGroup
from treadle.adapters.sandbox.spawner import WorkerProcess

Failure = Literal["timeout", "exit", "broken"]
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
# Kept per invocation; beyond it the pipe is still drained (the handler never blocks on a
# full pipe) but the bytes are dropped. 1 MiB: far more than anyone reads of one
# invocation (Lambda's own tail in a response is 4 KB, a CloudWatch event 256 KB), small
# enough that a tenant printing in a loop costs the log store and the server's memory
# little.
MAX_LOG_BYTES = 1 << 20
_READ_CHUNK = 1 << 20  # big reads: draining 100 MB costs a few ms of CPU
EXIT_WAIT_S = 5.0
# What Lambda reports when its cgroup's OOM killer ends the runtime.
_KILLED = "Runtime exited with error: signal: killed"

# (operation, request body) -> (reply header fields, reply body)
CallHandler = Callable[[str, bytes], tuple[dict[str, Any], bytes]]


def exit_reason(status: int | None) -> str:
    """How Lambda's Runtime.ExitError words a process end (Go's os.ProcessState)."""
    if status is None:
        return "signal: killed"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.strsignal(number) or f"signal {number}"
        return f"signal: {name.lower()}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class WorkerHandle:
    def __init__(
        self,
        *,
        key: str,
        generation: int,
        proc: WorkerProcess,
        chan: socket.socket,
        log_fd: int,
        memory_mb: int,
        group: WorkerGroup | None = None,
        on_discard: Callable[[], None] | None = None,
    ) -> None:
        self.key = key
        self.generation = generation
        self.proc = proc
        self.memory_mb = memory_mb
        self.spawned_at = time.monotonic()
        self.idle_since = 0.0  # when it last went idle (`pool`)
        self.ready = False
        self.init_ms: float | None = None  # its Init phase, reported by its first invocation
        self._served = False  # begin() was called: its init lines went to that invocation
        self.oom = False  # set by the server's memory watchdog before it kills
        self._chan = chan
        self._log_fd = log_fd
        self._log_open = True
        # Opened now, while the process is surely this worker: read for its peak RSS.
        self._status_fd = _open_status(proc)
        self._frames = protocol.FrameReader()
        self._queued: list[protocol.Frame] = []
        self._partial = b""
        self._log_bytes = 0
        self._dropped = 0
        self._lines: list[str] = []
        self._discarded = False
        self.group = group  # its cgroup (`cgroups`), None where there are none
        self._on_discard = on_discard

    def begin(self) -> None:
        # What its Init phase wrote (read while it was prepared ahead, `LocalSandbox.
        # prepare`) belongs to its first invocation, as on Lambda.
        if self._served:
            self._lines = []
            self._log_bytes = 0
            self._dropped = 0
        self._served = True

    def await_ready(self, deadline: float) -> Failure | dict[str, Any] | None:
        """Wait for the end of its Init phase: None once ready (`init_ms` set), else a
        failure of the wait or the `ready` frame's header (an init error, or its memory)."""
        got = self.wait_frame("ready", deadline)
        if isinstance(got, str):
            return got
        header, _ = got
        if header.get("oom") or header.get("error") is not None:
            return header
        self.ready = True
        self.init_ms = (time.monotonic() - self.spawned_at) * 1000
        return None

    def send(self, header: dict[str, Any], body: bytes, deadline: float) -> Failure | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        self._chan.settimeout(remaining)
        try:
            protocol.send_frame(self._chan, header, body)
        except TimeoutError:
            return "timeout"
        except OSError:
            return "exit"
        finally:
            self._chan.settimeout(None)
        return None

    def wait_frame(
        self, kind: str, deadline: float, on_call: CallHandler | None = None
    ) -> protocol.Frame | Failure:
        """Pump logs and the channel until a frame of this kind, the end, or the deadline.

        `call` frames (the durable channel) met on the way are answered with `on_call`.
        """
        # poll, not select: a busy server holds more than FD_SETSIZE descriptors.
        poller = select.poll()
        poller.register(self._chan, _READABLE)
        if self._log_open:
            poller.register(self._log_fd, _READABLE)
        while True:
            if self._queued:
                header, body = self._queued.pop(0)
                if header.get("t") == "call" and on_call is not None:
                    reply_header, reply_body = on_call(str(header.get("op")), body)
                    failure = self.send({"t": "reply", **reply_header}, reply_body, deadline)
                    if failure is not None:
                        return failure
                    continue
                return (header, body) if header.get("t") == kind else "broken"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            ready = {fd for fd, _ in poller.poll(math.ceil(remaining * 1000))}
            if self._log_fd in ready:
                self._read_logs()
                if not self._log_open:
                    poller.unregister(self._log_fd)
            if self._chan.fileno() in ready:
                try:
                    data = self._chan.recv(1 << 20)
                except OSError:
                    return "exit"
                if not data:
                    return "exit"
                try:
                    self._queued.extend(self._frames.feed(data))
                except protocol.ProtocolError:
                    return "broken"

    def _read_logs(self) -> None:
        while self._log_open:
            try:
                chunk = os.read(self._log_fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._log_open = False
                return
            if self._dropped:
                self._dropped += len(chunk)  # over the cap: drained, counted, not kept
                continue
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in lines:
                self._add_line(line)
            if len(self._partial) > MAX_LOG_BYTES:
                self._add_line(self._partial, ended=False)
                self._partial = b""

    def _add_line(self, raw: bytes, ended: bool = True) -> None:
        size = len(raw) + ended  # with its newline, if it had one
        if self._dropped or self._log_bytes + size > MAX_LOG_BYTES:
            self._dropped += size
            return
        self._log_bytes += size
        self._lines.append(raw.decode("utf-8", "replace"))

    def end_logs(self) -> list[str]:
        """This invocation's lines: what the worker wrote before replying is in the pipe."""
        self._read_logs()
        if self._partial:
            self._add_line(self._partial, ended=False)
            self._partial = b""
        if self._dropped:
            self._lines.append(f"[treadle] log output truncated: {self._dropped} bytes dropped")
        lines, self._lines = self._lines, []
        self._dropped = 0
        return lines

    def peak_rss_kb(self) -> int:
        # One descriptor kept per worker and read again from its start: a third of the
        # cost of an open, a read and a close per look (two per invocation, more from the
        # watchdog). It stays bound to this process: once it is gone, reads fail rather
        # than see a process that got its pid since.
        fd = self._status_fd
        if fd is None:
            return 0
        try:
            status = os.pread(fd, 4096, 0)
            at = status.index(b"VmHWM:") + 6
            return int(status[at : status.index(b"kB", at)])
        except (OSError, ValueError):
            return 0

    def over_memory(self, peak_kb: int | None = None) -> bool:
        # The high-water mark, not the current RSS: a spike between two samples counts,
        # as it would have met Lambda's cgroup limit.
        peak = self.peak_rss_kb() if peak_kb is None else peak_kb
        return peak > self.memory_mb * 1024

    def kill(self) -> None:
        self.proc.kill()

    def sweep(self) -> bool:
        """Kill every process the invocation left behind; False if some would not go."""
        if self.group is None:
            return True  # no cgroup: its process group dies with the worker (zygote)
        return self.group.sweep(keep=self.proc.pid if self.proc.running() else None)

    def wait_exit(self, timeout: float) -> int | None:
        if not self.proc.exited.wait(timeout):
            self.proc.kill()
            self.proc.exited.wait(timeout)
        return self.proc.status

    def discard(self) -> None:
        if self._discarded:
            return
        self._discarded = True
        self.proc.kill()
        self.proc.close()
        with contextlib.suppress(OSError):
            self._chan.close()
        with contextlib.suppress(OSError):
            os.close(self._log_fd)
        fd, self._status_fd = self._status_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._on_discard is not None:
            self._on_discard()  # its cgroup: whatever is left in it is killed, then removed


def _open_status(proc: WorkerProcess) -> int | None:
    try:
        fd = os.open(f"/proc/{proc.pid}/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    if not proc.running():  # gone before the open: the pid may be another's already
        os.close(fd)
        return None
    return fd


def _error(error_type: str, request_id: str, detail: str) -> dict[str, Any]:
    return {"errorType": error_type, "errorMessage": f"RequestId: {request_id} Error: {detail}"}


def as_error(value: object) -> dict[str, Any]:
    # The worker runs tenant code: what it sends is data, shaped here or replaced.
    if isinstance(value, dict) and isinstance(value.get("errorType"), str):
        return value
    return {"errorType": "Runtime.InvalidError", "errorMessage": "malformed error payload"}


def out_of_memory(handle: WorkerHandle, request_id: str) -> dict[str, Any]:
    handle.kill()
    handle.wait_exit(EXIT_WAIT_S)
    return _error("Runtime.OutOfMemory", request_id, _KILLED)


def failed(
    handle: WorkerHandle, timeout_s: float, request_id: str, failure: Failure
) -> dict[str, Any]:
    """Lambda's error for an invocation whose worker timed out, exited or broke the protocol."""
    if failure != "exit":
        handle.kill()
    status = handle.wait_exit(EXIT_WAIT_S)
    if handle.oom:
        return _error("Runtime.OutOfMemory", request_id, _KILLED)
    if failure == "timeout":
        detail = f"Task timed out after {timeout_s:.2f} seconds"
        return _error("Sandbox.Timedout", request_id, detail)
    if status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return _error("Runtime.ExitError", request_id, "Runtime exited without providing a reason")
    reason = exit_reason(status)
    return _error("Runtime.ExitError", request_id, f"Runtime exited with error: {reason}")
