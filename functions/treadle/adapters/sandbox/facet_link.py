"""Worker side of facets: where the tenant's facets are, and asking the platform for one.

`treadle_facets.connect(name)` calls `grant(name)`: a `facet.open` call over the
worker's channel (the one the durable channel uses), answered by the platform for this
worker's tenant only (`api/channel.py` `FacetChannel`), which makes the facet on first
use within the tenant's quotas. The answer is the facet's byte quota; the file itself
is then opened directly, so a query costs what SQLite costs.

Stdlib only (it runs in the worker).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

from treadle.adapters.sandbox import protocol

OP = "facet.open"
_link: tuple[socket.socket, threading.Lock, str] | None = None


class FacetCallError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def configure(chan: socket.socket, lock: threading.Lock, root: str | None) -> None:
    """Called once by the runtime, after confinement; `root` None: no facets here."""
    global _link
    _link = None if root is None else (chan, lock, root)


def grant(name: str) -> tuple[str, int]:
    """(path of the facet's database, its byte quota); FacetCallError when refused."""
    if _link is None:
        raise FacetCallError("Unavailable", "This worker has no facets (not run by Treadle).")
    chan, lock, root = _link
    with lock:
        protocol.send_frame(chan, {"t": "call", "op": OP}, json.dumps({"name": name}).encode())
        frame = protocol.recv_frame(chan)
    if frame is None:
        raise ConnectionError("the platform closed the worker's channel")
    header, body = frame
    if header.get("t") != "reply":
        raise ConnectionError(f"unexpected frame on the worker's channel: {header.get('t')}")
    error: dict[str, Any] | None = header.get("error")
    if error:
        raise FacetCallError(str(error.get("code")), str(error.get("message")))
    answer = json.loads(body)
    return os.path.join(root, str(answer["name"]), "db.sqlite"), int(answer["maxBytes"])
