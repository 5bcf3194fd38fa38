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
from treadle.adapters.sandbox.spawner import WorkerProcess

Failure = Literal["timeout", "exit", "broken"]
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
# A tenant printing in a loop must not exhaust the server's memory.
MAX_LOG_BYTES = 16 << 20
_TRUNCATED = "[treadle] log output of this invocation truncated"


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
    ) -> None:
        self.key = key
        self.generation = generation
        self.proc = proc
        self.memory_mb = memory_mb
        self.spawned_at = time.monotonic()
        self.ready = False
        self.oom = False  # set by the server's memory watchdog before it kills
        self._chan = chan
        self._log_fd = log_fd
        self._log_open = True
        self._frames = protocol.FrameReader()
        self._queued: list[protocol.Frame] = []
        self._partial = b""
        self._log_bytes = 0
        self._lines: list[str] = []
        self._discarded = False

    def begin(self) -> None:
        self._lines = []
        self._log_bytes = 0

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
                chunk = os.read(self._log_fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._log_open = False
                return
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in lines:
                self._add_line(line)
            if len(self._partial) > MAX_LOG_BYTES:
                self._add_line(self._partial)
                self._partial = b""

    def _add_line(self, raw: bytes) -> None:
        if self._log_bytes > MAX_LOG_BYTES:
            return
        self._log_bytes += len(raw)
        if self._log_bytes > MAX_LOG_BYTES:
            self._lines.append(_TRUNCATED)
            return
        self._lines.append(raw.decode("utf-8", "replace"))

    def end_logs(self) -> list[str]:
        """This invocation's lines: what the worker wrote before replying is in the pipe."""
        self._read_logs()
        if self._partial:
            self._add_line(self._partial)
            self._partial = b""
        lines, self._lines = self._lines, []
        return lines

    def peak_rss_kb(self) -> int:
        peak = 0
        try:
            with open(f"/proc/{self.proc.pid}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"VmHWM:"):
                        peak = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            return 0
        # Still running after the read: the pid was ours, not a recycled one.
        return peak if self.proc.running() else 0

    def over_memory(self) -> bool:
        # The high-water mark, not the current RSS: a spike between two samples counts,
        # as it would have met Lambda's cgroup limit.
        return self.peak_rss_kb() > self.memory_mb * 1024

    def kill(self) -> None:
        self.proc.kill()

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
