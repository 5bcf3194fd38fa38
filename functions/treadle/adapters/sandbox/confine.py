"""Inside a forked worker, before tenant code runs: what it may see and who it is.

The sandbox sends each worker of a tenant a plan (`identity.Confinement.plan`); it is
carried out here, in the fork, never by starting a new interpreter, so the zygote's
warm imports are kept (a namespace and a few mounts cost about half a millisecond).

Privileged (the platform runs as root), two independent layers:

1. Veil. In a mount namespace of its own, the platform's data directory, and any
   directory on the way to what the worker needs that others may not traverse (e.g.
   a 0700 /root holding pyenv's Python, pytest's 0700 /tmp/pytest-of-root), is covered
   by an empty read-only tmpfs; the tenant's code (read-only), its /tmp directory and
   the interpreter's directories are bind-mounted back at their usual paths. The tenant
   sees no platform file and no other tenant's code, whatever their modes.
2. Identity. The worker becomes its tenant's uid and gid for good: no supplementary
   groups, empty capability sets (bounding set included), no_new_privs so that no
   setuid binary gives anything back. Ownership and modes (code store,
   `hardening.protect_data_dir`) then keep out whatever the veil would not.

Unprivileged (a developer's laptop): the worker is the developer's uid, so modes
protect nothing from it; Landlock, when the kernel has it, keeps it to the system's and
the interpreter's directories, its code and its /tmp directories.

Stdlib only, like the rest of the worker.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from treadle.adapters.sandbox import landlock, netns

_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
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

_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once in the zygote, not per fork


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    result = _LIBC.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {target}")


def probe() -> dict[str, Any]:
    """What this host allows; run once in the zygote, before it imports anything."""
    root = os.geteuid() == 0
    return {
        "root": root,
        "mount_ns": root and _can_unshare_mounts(),
        "landlock": landlock.abi_version(),
        "cap_last": _cap_last() if root else 0,
    }


def _can_unshare_mounts() -> bool:
    # In a child: a namespace would stay with the zygote otherwise. Containers without
    # CAP_SYS_ADMIN (Docker's default) refuse it.
    pid = os.fork()
    if pid == 0:
        ok = _LIBC.unshare(_CLONE_NEWNS) == 0
        ok = ok and _LIBC.mount(None, b"/", None, ctypes.c_ulong(_MS_REC | _MS_PRIVATE), None) == 0
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _cap_last() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 63  # dropping a capability the kernel does not have is harmless


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


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


def blocking_ancestor(path: str) -> str | None:
    """The highest directory above `path` that others may not pass through, if any."""
    current = ""
    for part in path.strip("/").split("/")[:-1]:
        current += "/" + part
        try:
            if not os.stat(current).st_mode & stat.S_IXOTH:
                return current
        except OSError:
            return None
    return None


def _outermost(paths: Iterable[str]) -> list[str]:
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(under(path, k) for k in kept):
            kept.append(path)
    return kept


def veil(hide: Sequence[str], show: Sequence[tuple[str, bool]]) -> None:
    """Cover `hide` with empty tmpfs in a new mount namespace; show `show` again.

    `show`: (directory, writable) pairs, bind-mounted back at the same path where a
    cover hid them. Must run as root, single-threaded (unshare refuses otherwise).
    """
    covers = _outermost(p for p in hide if p != "/" and os.path.isdir(p))
    if not covers:
        return
    shown: list[tuple[str, bool]] = []
    for path, writable in sorted(show, key=lambda s: len(s[0])):
        if any(under(path, c) for c in covers) and not any(under(path, s) for s, _ in shown):
            shown.append((path, writable))
    _check(_LIBC.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # First, so that nothing below propagates to the host's mount table.
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    # Opened before the covers exist (afterwards these paths lead into the tmpfs), and
    # after unshare: a bind mount's source must be a mount of the caller's namespace.
    fds: list[tuple[str, bool, int]] = []
    try:
        for path, writable in shown:
            fds.append((path, writable, os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)))
        for cover in covers:
            flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
            _mount("tmpfs", cover, "tmpfs", flags, "mode=0755,size=64k")
        for path, writable, fd in fds:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
            flags = _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV
            _mount(None, path, None, flags if writable else flags | _MS_RDONLY)
        for cover in covers:
            flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
            _mount(None, cover, None, flags)
    finally:
        for *_, fd in fds:
            os.close(fd)


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
    _check(_LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    for cap in range(cap_last + 1):
        # The bounding set limits what any later execve can grant.
        if _LIBC.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            _check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")
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
    _check(_LIBC.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def apply(plan: Mapping[str, Any], code_dir: str, caps: Mapping[str, Any]) -> None:
    """Carry out the sandbox's plan for this worker (see the module docstring)."""
    tmp_dir = str(plan["tmp_dir"])
    hide = [os.path.realpath(p) for p in plan["hide"]]
    # A directory of the interpreter that holds the platform's data is not shown.
    python = [p for p in python_dirs() if not any(under(h, p) for h in hide)]
    if plan.get("netns"):
        # First: the veil hides the file, and joining needs the capabilities dropped below.
        netns.join(str(plan["netns"]))
    uid = plan.get("uid")
    if uid is None:
        _landlock(int(caps.get("landlock") or 0), code_dir, tmp_dir, python, hide)
        return
    if caps.get("mount_ns"):
        show = [(code_dir, False), (tmp_dir, True), *((p, False) for p in python)]
        blocked = (blocking_ancestor(p) for p, _ in show)
        veil([*hide, *(b for b in blocked if b is not None)], show)
    drop_privileges(int(uid), int(uid), int(caps.get("cap_last") or 63))


def _landlock(abi: int, code_dir: str, tmp_dir: str, python: list[str], hide: list[str]) -> None:
    if abi < 1:
        return  # the sandbox warned once, at start

    def allowed(paths: Iterable[str]) -> list[str]:
        # Rules grant whole trees: one that holds the platform's data is left out.
        return [p for p in paths if not any(under(h, p) for h in hide)]

    try:
        landlock.restrict(
            abi,
            read=[*allowed(SYSTEM_READ), *python, code_dir],
            write=[*allowed(SYSTEM_WRITE), tmp_dir],
            devices=DEVICES,
        )
    except OSError as exc:
        # Best effort by design: an unprivileged platform never fails code for it.
        print(f"[treadle] file access not restricted: {exc}", file=sys.stderr)
