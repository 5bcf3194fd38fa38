"""Who a tenant's code runs as, and what each of its workers is told to confine itself to.

Privileged (the platform runs as root): every tenant has a uid of its own, gid equal,
so that one tenant's processes cannot open another's files, nor the platform's. The
uid is allocated on first use and recorded (`tenant-ids.json`, shared by the sandboxes
of every server process of the data directory and allocated under a file lock), not
derived by hashing: 12-digit account ids do not fit injectively in 32
bits, and two tenants sharing a uid would share their files. Allocation starts at
0x70000000: above the range systemd hands to containers (0x00080000-0x6FFFFFFF),
below its "foreign" range (0x7FFE0000) and below 2**31 (tools that read uids as signed
ints); login accounts and subordinate-uid ranges (/etc/subuid) are not up there.
A uid that does belong to an account is skipped.

Privileged, each tenant also has a network namespace of its own (`netns.py`): loopback
only, with the tenant's platform endpoint on it, and a link out when its egress policy
allows more (`egress.py`).

Unprivileged: no uids to hand out; workers confine themselves with Landlock if the
kernel has it, and share the host's network. Either way the worker does the work itself
(`confine.py`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pwd
import re
import threading
from collections.abc import Callable, Mapping
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from treadle.adapters.sandbox import egress
from treadle.adapters.sandbox.netns import ENDPOINT_PORT, PolicyOf, Serve, TenantNetworks

log = logging.getLogger(__name__)

UID_BASE = 0x7000_0000
UID_LIMIT = 0x7FFE_0000
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_warned: set[str] = set()  # each warning once per process, not once per sandbox


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


class TenantIds:
    """tenant -> uid, allocated once and kept (a file written atomically, 0600).

    Several processes may allocate (`treadle dev --processes`): a mapping never changes
    once written, so a cached one is always right, and a tenant not in the cache is
    looked up again in the file, under an exclusive lock of `<path>.lock`, before a uid
    is allocated for it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._ids: dict[str, int] | None = None

    def _load(self) -> dict[str, int]:
        if self._ids is None:
            try:
                raw = json.loads(self._path.read_text())
                self._ids = {str(k): int(v) for k, v in raw["tenants"].items()}
            except FileNotFoundError:
                self._ids = {}
        return self._ids

    def uid(self, tenant: str) -> int:
        if not _TENANT.fullmatch(tenant):
            raise ValueError(f"not a tenant id: {tenant!r}")
        with self._lock:
            found = self._load().get(tenant)
            if found is not None:
                return found
            fd = os.open(f"{self._path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._ids = None  # another process may have written since the cache
                return self._allocate(tenant)
            finally:
                os.close(fd)  # releases the lock

    def _allocate(self, tenant: str) -> int:
        ids = self._load()
        found = ids.get(tenant)
        if found is not None:
            return found
        taken = set(ids.values())
        uid = max(taken, default=UID_BASE - 1) + 1
        while uid in taken or _is_account(uid):
            uid += 1
        if uid >= UID_LIMIT:
            raise RuntimeError("no sandbox uid left")
        self._save({**ids, tenant: uid})
        return uid

    def _save(self, ids: dict[str, int]) -> None:
        # Written before use: a uid handed out and then forgotten in a crash could be
        # given to another tenant while files of the first still carry it.
        # Imported here: the zygote imports this package and must hold none of the
        # platform's other modules (tests/integration/test_sandbox.py checks it).
        from treadle.files import write_atomically

        document = json.dumps({"tenants": ids}, indent=1, sort_keys=True)
        write_atomically(self._path, document.encode(), tmp_prefix=".tenant-ids-")
        self._ids = ids


def _is_account(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


class Confinement:
    """The sandbox's side: uids, directory ownership, and each worker's plan."""

    def __init__(
        self,
        work_dir: Path,
        private_root: Path,
        privileged: bool | None,
        network: bool | None = None,
        subnet: IPv4Network = egress.DEFAULT_SUBNET,
        ids_path: Path | None = None,
    ) -> None:
        # ids_path: the tenant uids' file, shared by the processes of one data directory
        # (default: in the work directory).
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        if self.privileged and os.geteuid() != 0:
            raise ValueError("privileged confinement needs the platform to run as root")
        self._work_dir = work_dir
        self._private_root = private_root
        self._ids = TenantIds(ids_path or work_dir / "tenant-ids.json")
        self._new_root = False  # workers get a root of their own (`rootfs`): known at start
        # tenant -> its facets directory on the host (made on demand), when facets are on.
        self.facets: Callable[[str], Path] | None = None
        # network: a namespace per tenant (default: when privileged).
        isolate = self.privileged if network is None else network
        if isolate and not self.privileged:
            raise ValueError("network namespaces need privileged confinement")
        self.networks = (
            TenantNetworks(work_dir / "netns", egress.EgressLinks(subnet)) if isolate else None
        )

    def uid(self, tenant: str | None) -> int | None:
        """The uid the tenant's code runs as; None when uids are not changed."""
        return None if tenant is None or not self.privileged else self._ids.uid(tenant)

    def group(self, tenant: str) -> int | None:
        """The gid the tenant's code runs with; None when uids are not changed."""
        return self._ids.uid(tenant) if self.privileged else None

    def protect(self, tmp_root: Path) -> None:
        """Work dir and /tmp root: traversable, not listable, by the tenant uids.

        Traversable so that a worker without a mount namespace still reaches its own
        /tmp directory; not listable, and each directory below is its tenant's (0700).
        """
        if self.privileged:
            for path in (self._work_dir, tmp_root):
                path.chmod(0o711)

    def plan(self, tenant: str | None, tmp_dir: Path) -> dict[str, Any] | None:
        """What a worker of `tenant` confines itself to; None for trusted code.

        A spec without a tenant is code of the program embedding the sandbox (its own
        tests); the platform always names the tenant.
        """
        if tenant is None:
            return None
        plan = self.tenant_plan(tenant)
        uid = plan["uid"]
        if uid is not None and tmp_dir.stat().st_uid != uid:
            # A tmpfs is mounted with its owner already.
            os.chown(tmp_dir, uid, uid)
            tmp_dir.chmod(0o700)
        plan["tmp_dir"] = str(tmp_dir)
        return plan

    def tenant_plan(self, tenant: str) -> dict[str, Any]:
        """`plan` less the function's /tmp: what a tenant's spare is confined by."""
        uid = self._ids.uid(tenant) if self.privileged else None
        # Hidden whole: the platform's files, other versions' /tmp, the zygote's home.
        hide = sorted({str(self._private_root.resolve()), str(self._work_dir.resolve())})
        plan: dict[str, Any] = {"uid": uid, "hide": hide}
        if self.facets is not None:
            # Writable by the worker (`rootfs` binds it; Landlock allows it).
            plan["facets"] = os.path.realpath(self.facets(tenant))
        netns = self.network(tenant)
        if netns is not None:
            plan["netns"] = netns
        return plan

    def network(self, tenant: str) -> str | None:
        """The tenant's network namespace (a file to setns to), made on first use; None
        when tenant code shares the host's network."""
        if self.networks is None:
            return None
        if not _TENANT.fullmatch(tenant):
            raise ValueError(f"not a tenant id: {tenant!r}")
        try:
            return self.networks.path(tenant)
        except OSError as exc:
            if self.networks.made_any:
                raise  # this host can: no worker runs outside its namespace
            # A container refusing CLONE_NEWNET: said once, then the host's network.
            _warn_once(
                f"sandbox: no network namespaces here ({exc}); tenant code shares the "
                "host's network (egress policy not enforced)"
            )
            self.networks = None
            return None

    def egress_from(self, policy_of: PolicyOf) -> None:
        if self.networks is not None:
            self.networks.egress_from(policy_of)

    def egress_refusal(self, policy: egress.Policy) -> str | None:
        """Why this host cannot enforce `policy` on tenant code (None: it can)."""
        if policy == "none":
            return None
        if self.networks is None:
            return (
                "tenant code here shares the host's network (no network namespaces: the "
                "platform does not run as root, or the host refuses them)"
            )
        missing = egress.missing_tools()
        if missing:
            return f"the host lacks {', '.join(missing)} (packages iproute2, nftables, util-linux)"
        return None

    def set_egress(self, tenant: str, policy: egress.Policy) -> None:
        if self.networks is not None:
            self.networks.set_egress(tenant, policy)

    def serve_endpoints(self, serve: Serve) -> None:
        if self.networks is not None:
            self.networks.serve_with(serve)

    def clean(self) -> None:
        """Namespaces left bound by a platform that died without `close`."""
        if self.networks is not None:
            self.networks.clean()

    def close(self) -> None:
        if self.networks is not None:
            self.networks.close()

    def endpoint(self, tenant: str) -> str | None:
        """The platform endpoint inside the tenant's namespace, when it has one and the
        platform serves it."""
        if self.networks is None or not self.networks.served or self.network(tenant) is None:
            return None
        return f"http://127.0.0.1:{ENDPOINT_PORT}"

    def shortcomings(self, caps: Mapping[str, Any]) -> list[str]:
        """What keeps tenants' code from being isolated from each other on this host.

        Empty: every tenant's workers are confined as the platform promises. Otherwise
        the platform keeps to one tenant unless its operator says otherwise.
        """
        if not self.privileged:
            return ["the platform does not run as root, so tenants cannot have uids of their own"]
        if not caps.get("mount_ns"):
            return ["the host gives no mount namespaces (CAP_SYS_ADMIN), so tenants see its files"]
        return []

    def tmp_inside(self, plan: Mapping[str, Any] | None, tmp_dir: Path) -> Path:
        """Where the worker finds its /tmp (TMPDIR, HOME): /tmp itself in a new root."""
        if plan is not None and plan["uid"] is not None and self._new_root:
            return Path("/tmp")
        return tmp_dir

    def report(self, caps: Mapping[str, Any]) -> None:
        """Say once, at start, when the host leaves tenant code less confined."""
        self._new_root = self.privileged and bool(caps.get("mount_ns"))
        if self.privileged and not caps.get("mount_ns"):
            _warn_once(
                "sandbox: no mount namespaces here (CAP_SYS_ADMIN?); tenant code runs as "
                "its own uid and the platform's files are protected by their modes only. "
                "Tenants need to traverse the data directory's and Python's ancestors."
            )
        elif not self.privileged and not caps.get("landlock"):
            _warn_once(
                "sandbox: not running as root and the kernel has no Landlock: tenant "
                "code runs as this user and can read what it can; isolation is by "
                "environment scrubbing only"
            )
        if not self.privileged:
            _warn_once(
                "sandbox: not running as root: tenant code shares the host's network "
                "(no network namespace; egress policy not enforced)"
            )
