"""Inside a forked worker, before tenant code runs: what it may see and who it is.

The sandbox sends each worker of a tenant a plan (`identity.Confinement.plan`); it is
carried out here, in the fork, never by starting a new interpreter, so the zygote's
warm imports are kept (a namespace and its new root cost about a millisecond).

Privileged (the platform runs as root), two independent layers:

1. Root. In a mount namespace of its own, the worker's root becomes a new tree that
   holds only the system's directories, a curated /etc, the interpreter's directories,
   its code (read-only) and its environment's /tmp (`rootfs`). The tenant sees no
   platform file, no other tenant's code and nothing else of the host, whatever their
   modes; its /proc shows processes of its own uid only.
2. Identity. The worker becomes its tenant's uid and gid for good: no supplementary
   groups, empty capability sets (bounding set included), no_new_privs so that no
   setuid binary gives anything back. Ownership and modes (code store,
   `hardening.protect_data_dir`) keep out what the new root would, where the host
   allows no mount namespace.

Unprivileged (a developer's laptop): the worker is the developer's uid, so modes
protect nothing from it; Landlock, when the kernel has it, keeps it to the system's and
the interpreter's directories, its code and its /tmp directories.

Stdlib only, like the rest of the worker.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from treadle.adapters.sandbox import landlock, netns, rootfs
from treadle.adapters.sandbox.mounts import LIBC as _LIBC
from treadle.adapters.sandbox.mounts import MS_PRIVATE, MS_REC, check, has_open_tree, under

_CLONE_NEWNS = 0x00020000
# The platform's own source, of which a confined worker sees its runtime only.
RUNTIME_DIR = os.path.dirname(os.path.realpath(__file__))
_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(RUNTIME_DIR)))
# Helpers tenant code imports beside the SDK (`treadle_workflows`): shown too.
WORKFLOWS_DIR = os.path.join(_SOURCE_ROOT, "treadle_workflows")
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38

# Unprivileged workers (Landlock): what any program may need to read, and to write.
SYSTEM_READ = (
    "/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
    "/nix", "/proc", "/sys", "/run/systemd/resolve",
)  # fmt: skip
SYSTEM_WRITE = ("/tmp", "/var/tmp", "/dev/shm")
DEVICES = ("/dev",)


def probe() -> dict[str, Any]:
    """What this host allows; run once in the zygote, before it imports anything."""
    root = os.geteuid() == 0
    mount_ns = root and _can_unshare_mounts()
    if mount_ns:
        rootfs.prepare(_runtime_only(python_dirs()))
    return {
        "root": root,
        "mount_ns": mount_ns,
        "landlock": landlock.abi_version(),
        "cap_last": _cap_last() if root else 0,
        "open_tree": mount_ns and has_open_tree(),
    }


def _can_unshare_mounts() -> bool:
    # In a child: a namespace would stay with the zygote otherwise. Containers without
    # CAP_SYS_ADMIN (Docker's default) refuse it.
    pid = os.fork()
    if pid == 0:
        ok = _LIBC.unshare(_CLONE_NEWNS) == 0
        ok = ok and _LIBC.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) == 0
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _cap_last() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 63  # dropping a capability the kernel does not have is harmless


def python_dirs() -> list[str]:
    """Where the interpreter, its stdlib, site-packages and Treadle's worker code live."""
    candidates = [
        *sys.path,
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        os.path.dirname(sys.executable),
        os.path.dirname(os.path.realpath(sys.executable)),
    ]
    return sorted({os.path.realpath(p) for p in candidates if p and os.path.isdir(p)})


def capabilities() -> dict[str, int]:
    """This process's capability sets, from /proc/self/status."""
    sets: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.startswith("Cap"):
            sets[name] = int(value.strip(), 16)
    return sets


def drop_privileges(uid: int, gid: int, cap_last: int) -> None:
    """Become uid/gid with nothing that could lead back to root; verified, or raise."""
    _bound(cap_last)
    _become(uid, gid)


def _bound(cap_last: int) -> None:
    """No execve can ever give anything back: what the capabilities in use do not need,
    so a spare does it while it waits (it still mounts with them afterwards)."""
    check(_LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    for cap in range(cap_last + 1):
        # The bounding set limits what any later execve can grant.
        if _LIBC.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")


def _become(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    # Leaving uid 0 without SECBIT_KEEP_CAPS clears permitted, effective and ambient.
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise PermissionError("the worker did not become its tenant's uid")
    if any(capabilities().values()):
        raise PermissionError(f"the worker kept capabilities: {capabilities()}")
    # The change of uid made the process non-dumpable: its /proc/self files became
    # root's, unreadable by itself (Lambda code may read /proc/self/environ, fd/, ...).
    # Dumpable again, it can be inspected by processes of its own uid only, that is
    # its tenant's; its memory is the zygote's (no tenant data) plus its own.
    check(_LIBC.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def apply(plan: Mapping[str, Any], code_dir: str, caps: Mapping[str, Any]) -> None:
    """Carry out the sandbox's plan for this worker (see the module docstring)."""
    tmp_dir = str(plan["tmp_dir"])
    hide = [os.path.realpath(p) for p in plan["hide"]]
    facets = plan.get("facets")
    if plan.get("netns"):
        # First: the new root hides the file, and joining needs the capabilities dropped
        # below.
        netns.join(str(plan["netns"]))
    uid = plan.get("uid")
    if uid is None:
        # A directory of the interpreter that holds the platform's data is not shown.
        python = [p for p in python_dirs() if not any(under(h, p) for h in hide)]
        writable = [tmp_dir, *([facets] if facets else [])]
        _landlock(int(caps.get("landlock") or 0), code_dir, writable, python, hide)
        return
    if caps.get("mount_ns"):
        if not rootfs.prepared():  # done by `probe` in the zygote; here, a test's fork
            rootfs.prepare(_runtime_only(python_dirs()))
        rootfs.enter(code_dir, tmp_dir, hide, facets)
    drop_privileges(int(uid), int(uid), int(caps.get("cap_last") or 63))


def spare_supported(caps: Mapping[str, Any]) -> bool:
    """Whether a worker can be confined before it knows its function (`apply_spare`)."""
    return bool(caps.get("root") and caps.get("mount_ns") and caps.get("open_tree"))


def apply_spare(plan: Mapping[str, Any], code_home: str, caps: Mapping[str, Any]) -> None:
    """`apply` for a tenant's spare, up to what needs the function: its root without
    /tmp and code, still root (`finish_spare` completes it)."""
    if plan.get("uid") is None or not spare_supported(caps):
        raise PermissionError("a spare is confined ahead only with a new root and a uid")
    if plan.get("netns"):
        netns.join(str(plan["netns"]))
    if not rootfs.prepared():
        rootfs.prepare(_runtime_only(python_dirs()))
    hide = [os.path.realpath(p) for p in plan["hide"]]
    rootfs.enter_spare(code_home, hide, plan.get("facets"))
    _bound(int(caps.get("cap_last") or 63))


def finish_spare(
    plan: Mapping[str, Any],
    code_dir: str,
    code_home: str,
    fds: tuple[int, int],
    caps: Mapping[str, Any],
) -> None:
    """The function's /tmp and code (`fds`: copies of the platform's mounts of them),
    then the tenant's uid for good, as `apply` ends."""
    rootfs.attach_function(fds[0], fds[1], code_dir, code_home)
    uid = int(plan["uid"])
    _become(uid, uid)  # the bounding set went in `apply_spare`


def _runtime_only(python: list[str]) -> list[str]:
    """Python's directories, with the platform's source (an editable install's sys.path
    entry) narrowed to the worker runtime's package and `treadle_facets`: the rest is
    the platform's, and was imported by the zygote already if the worker needs it."""
    if _SOURCE_ROOT not in python or os.path.basename(_SOURCE_ROOT).endswith("-packages"):
        return python
    facets = os.path.join(_SOURCE_ROOT, "treadle_facets")  # the module tenant code imports
    shown = [RUNTIME_DIR, WORKFLOWS_DIR, *([facets] if os.path.isdir(facets) else [])]
    return [*(p for p in python if p != _SOURCE_ROOT), *shown]


def facets_dir(plan: Mapping[str, Any] | None, caps: Mapping[str, Any]) -> str | None:
    """Where this worker finds its tenant's facets, once `apply` has run."""
    if plan is None or not plan.get("facets"):
        return None
    if plan.get("uid") is not None and caps.get("mount_ns"):
        return rootfs.FACETS
    return str(plan["facets"])


def _landlock(
    abi: int, code_dir: str, writable: list[str], python: list[str], hide: list[str]
) -> None:
    if abi < 1:
        return  # the sandbox warned once, at start

    def allowed(paths: Iterable[str]) -> list[str]:
        # Rules grant whole trees: one that holds the platform's data is left out.
        return [p for p in paths if not any(under(h, p) for h in hide)]

    try:
        landlock.restrict(
            abi,
            read=[*allowed(SYSTEM_READ), *python, code_dir],
            write=[*allowed(SYSTEM_WRITE), *writable],
            devices=DEVICES,
        )
    except OSError as exc:
        # Best effort by design: an unprivileged platform never fails code for it.
        print(f"[treadle] file access not restricted: {exc}", file=sys.stderr)
