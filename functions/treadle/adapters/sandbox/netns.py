"""A network namespace per tenant: its code reaches no host service, only its endpoint.

Privileged, each tenant's workers share one network namespace holding a loopback
device and nothing else: no route leaves it, so the host's 127.0.0.1 services, the
metadata address 169.254.169.254 and the outside are unreachable (egress policy
`none`, enforced by the kernel). The platform creates it once per tenant, on first use:

- a short-lived platform thread unshares CLONE_NEWNET (allowed in a multi-threaded
  process: network namespaces are per thread), brings `lo` up (one ioctl), and
  bind-mounts its /proc/thread-self/ns/net on `<work dir>/netns/<tenant>`, which keeps
  the namespace alive after the thread is gone;
- the same thread creates the listening socket of the tenant's platform endpoint
  (127.0.0.1:ENDPOINT_PORT): a socket stays in the namespace it was created in, so the
  platform serves it from any thread while tenant code connects to it locally.

A tenant whose egress policy is not `none` also gets a link to the host, whose packet
filter enforces the policy (`egress.py`); the platform says which policy each tenant
has (`egress_from`) and when one changes (`set_egress`).

A worker joins its tenant's namespace in the fork (`join`, from `confine.apply`),
before the veil hides the file and before it drops its capabilities: an open and a
setns, a few microseconds.

Stdlib only: `join` runs in the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from treadle.adapters.sandbox.egress import EgressLinks, Link, Policy

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
# Like Lambda's runtime API (127.0.0.1:9001), one fixed port in every namespace.
ENDPOINT_PORT = 9001
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_MS_BIND = 4096
_MNT_DETACH = 2
_LIBC = ctypes.CDLL(None, use_errno=True)

# What the platform does with each tenant's endpoint socket (tenant, listening socket):
# serve it until the returned function is called.
Serve = Callable[[str, socket.socket], Callable[[], None]]
# A tenant's egress policy, as the platform has it stored.
PolicyOf = Callable[[str], Policy]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def join(path: str) -> None:
    """Move the calling process into the namespace bound at `path` (a worker, as root)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_LIBC.setns(fd, CLONE_NEWNET), f"setns({path})")
    finally:
        os.close(fd)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | _IFF_UP))


def _unmount(path: Path) -> None:
    _LIBC.umount2(str(path).encode(), _MNT_DETACH)  # not mounted (a crash): fine
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class TenantNetworks:
    """The namespaces of one sandbox: created on first use, removed by `close`."""

    def __init__(self, directory: Path, egress: EgressLinks | None = None) -> None:
        self._dir = directory
        self._egress = egress or EgressLinks()
        self._policy_of: PolicyOf = lambda tenant: "none"
        self._links: dict[str, Link] = {}
        self._lock = threading.Lock()
        self._paths: dict[str, str] = {}
        self._sockets: dict[str, socket.socket] = {}
        self._serve: Serve | None = None
        self._stops: list[Callable[[], None]] = []

    @property
    def served(self) -> bool:
        return self._serve is not None

    @property
    def made_any(self) -> bool:
        return bool(self._paths)

    def serve_with(self, serve: Serve) -> None:
        """Hand each endpoint socket (those made already and later ones) to `serve`."""
        with self._lock:
            self._serve = serve
            for tenant, sock in self._sockets.items():
                self._stops.append(serve(tenant, sock))

    def egress_from(self, policy_of: PolicyOf) -> None:
        """Where each tenant's egress policy is read when its namespace is made."""
        self._policy_of = policy_of

    def set_egress(self, tenant: str, policy: Policy) -> None:
        """Apply a changed policy to the tenant's namespace now (if it has one yet; else
        it is read when the namespace is made). Raises EgressError, the link removed."""
        with self._lock:
            path = self._paths.get(tenant)
            if path is None:
                return
            link = self._links.pop(tenant, None)
            made = self._egress.apply(path, link, policy)
            if made is not None:
                self._links[tenant] = made

    def clean(self) -> None:
        """Remove namespaces a process that died without `close` left bound."""
        with self._lock:
            ours = set(self._paths.values())
        if self._dir.is_dir():
            for leftover in self._dir.iterdir():
                if str(leftover) not in ours:
                    _unmount(leftover)

    def path(self, tenant: str) -> str:
        """The file the tenant's namespace is bound on, created on first use."""
        with self._lock:
            found = self._paths.get(tenant)
            if found is not None:
                return found
            target = self._dir / tenant
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            sock = self._create(target)
            try:
                link = self._egress.apply(str(target), None, self._policy_of(tenant))
            except BaseException:
                sock.close()
                _unmount(target)  # no worker starts with less than its policy says
                raise
            if link is not None:
                self._links[tenant] = link
            self._paths[tenant] = str(target)
            self._sockets[tenant] = sock
            if self._serve is not None:
                self._stops.append(self._serve(tenant, sock))
        return str(target)

    def _create(self, target: Path) -> socket.socket:
        # Thread-local: only this new thread enters the namespace, then it ends.
        made: list[socket.socket] = []
        failed: list[BaseException] = []

        def run() -> None:
            try:
                made.append(self._in_new_namespace(target))
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=run, name="sandbox-netns")
        thread.start()
        thread.join()
        if failed:
            _unmount(target)
            raise failed[0]
        return made[0]

    @staticmethod
    def _in_new_namespace(target: Path) -> socket.socket:
        _check(_LIBC.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        _loopback_up()
        target.touch(mode=0o600)
        source = f"/proc/self/task/{threading.get_native_id()}/ns/net"
        _check(
            _LIBC.mount(
                source.encode(), str(target).encode(), None, ctypes.c_ulong(_MS_BIND), None
            ),
            f"mount {target}",
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", ENDPOINT_PORT))
        sock.listen(64)
        return sock

    def close(self) -> None:
        with self._lock:
            paths, self._paths = self._paths, {}
            sockets, self._sockets = self._sockets, {}
            stops, self._stops = self._stops, []
            links, self._links = self._links, {}
        for link in links.values():
            self._egress.remove(link)
        for stop in stops:
            stop()
        for sock in sockets.values():
            with contextlib.suppress(OSError):
                sock.close()
        for path in paths.values():
            _unmount(Path(path))


def available() -> bool:
    """Whether this process may create network namespaces (root, not refused by a
    container's policy); tried in a thread of its own, which then ends."""
    if os.geteuid() != 0:
        return False
    ok: list[bool] = []

    def run() -> None:
        ok.append(_LIBC.unshare(CLONE_NEWNET) == 0)

    thread = threading.Thread(target=run, name="sandbox-netns-probe")
    thread.start()
    thread.join()
    return bool(ok and ok[0])
