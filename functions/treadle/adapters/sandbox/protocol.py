"""Wire formats between the server, the zygote and the workers (stdlib only).

Worker channel (`SOCK_STREAM`): frames of `!II` (header length, body length), a JSON
header, then an opaque body. Payloads travel as bodies: a 6 MB event is neither
re-escaped inside JSON nor split on newlines.

Zygote control channel (`SOCK_SEQPACKET`): one JSON message per packet; file
descriptors ride on the same packet as `SCM_RIGHTS`, so they cannot be paired with
the wrong message.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any

PREFIX = struct.Struct("!II")
MAX_HEADER = 1 << 20
# Lambda caps payloads at 6 MB; anything far beyond is a confused or hostile worker.
MAX_BODY = 64 << 20
MAX_CONTROL = 1 << 20
MAX_FDS = 4

Frame = tuple[dict[str, Any], bytes]


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def send_frame(sock: socket.socket, header: Mapping[str, Any], body: bytes = b"") -> None:
    head = json.dumps(header, separators=(",", ":")).encode()
    if len(head) > MAX_HEADER or len(body) > MAX_BODY:
        raise ProtocolError(f"frame too large: header {len(head)}, body {len(body)}")
    sock.sendall(PREFIX.pack(len(head), len(body)) + head)
    if body:
        sock.sendall(body)


def _decode_header(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"bad frame header: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not an object")
    return header


def _check_sizes(head_len: int, body_len: int) -> None:
    if head_len > MAX_HEADER or body_len > MAX_BODY:
        raise ProtocolError(f"frame too large: header {head_len}, body {body_len}")


def _recv_exact(sock: socket.socket, size: int) -> bytearray | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            return None
        got += n
    return buf


def recv_frame(sock: socket.socket) -> Frame | None:
    """Blocking read of one frame; None on a clean end of stream."""
    prefix = _recv_exact(sock, PREFIX.size)
    if prefix is None:
        return None
    head_len, body_len = PREFIX.unpack(prefix)
    _check_sizes(head_len, body_len)
    head = _recv_exact(sock, head_len) if head_len else bytearray()
    body = _recv_exact(sock, body_len) if body_len else bytearray()
    if head is None or body is None:
        raise ProtocolError("stream ended inside a frame")
    return _decode_header(head), bytes(body)


class FrameReader:
    """Incremental decoder for a non-blocking reader that gets arbitrary chunks."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= PREFIX.size:
            head_len, body_len = PREFIX.unpack_from(self._buf)
            _check_sizes(head_len, body_len)
            end = PREFIX.size + head_len + body_len
            if len(self._buf) < end:
                break
            header = _decode_header(self._buf[PREFIX.size : PREFIX.size + head_len])
            body = bytes(self._buf[PREFIX.size + head_len : end])
            del self._buf[:end]
            frames.append((header, body))
        return frames


def send_msg(sock: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_CONTROL:
        raise ProtocolError(f"control message too large: {len(data)} bytes")
    socket.send_fds(sock, [data], list(fds))


def recv_msg(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """One control message and the descriptors it carried; None when the peer is gone."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_CONTROL, MAX_FDS)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ProtocolError("control message truncated")
    if not data:
        for fd in fds:
            os.close(fd)
        return None
    try:
        return _decode_header(data), fds
    except ProtocolError:
        for fd in fds:
            os.close(fd)
        raise
