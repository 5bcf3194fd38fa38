"""A confined worker's filesystem: a new root that holds only what a Python runtime needs.

Run in the fork as root, single-threaded, before the worker drops its privileges
(`confine.apply`). The new root is a small tmpfs, pivoted to, holding:

- read-only: the system's /usr, /bin, /sbin, /lib* (symlinks, as on usrmerge systems,
  recreated as they are), a curated /etc (each file bind-mounted: live, so a changed
  resolv.conf is seen), the interpreter's directories and the function's code, at
  their usual paths (LAMBDA_TASK_ROOT and sys.path stay valid);
- writable: /tmp, the environment's private tmpfs (`envtmp`), and the tenant's facets
  directory at `FACETS` (when the platform gives one: `adapters/sqlite/facets.py`);
- /dev: a read-only tmpfs with null, zero, full, random, urandom only;
- /proc: a new procfs with hidepid=invisible: tenant code sees its own uid's
  processes, not the server's nor other tenants'.

Nothing else of the host: its /tmp, /home, /root, /opt, /srv, /var, the data dir and
other tenants' code are not in the tree at all. Cost: one bind mount per shown path,
made through fds opened before anything is covered, then one mount_setattr(2) makes
the whole tree read-only at once rather than a remount per bind.

Stdlib only (it runs in the worker).
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Callable, Iterable, Sequence

from treadle.adapters.sandbox.mounts import (
    LIBC,
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    attach,
    check,
    mount,
    outermost,
    under,
    unmount,
)

SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What a Python runtime reads under /etc (users, name resolution, TLS roots, time
# zone, the dynamic linker's cache, MIME types); whatever of it the host has. Each is
# a mount per worker: what only tools (ldconfig, update-ca-certificates) read is left out.
ETC = (
    "passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "gai.conf", "protocols",
    "services", "localtime", "ld.so.cache", "ssl", "pki", "mime.types", "os-release",
)  # fmt: skip
DEVICES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
# Where the new root is assembled before the pivot: any existing directory will do
# (this namespace's copy of it is covered, the host's is untouched).
# Where a worker finds its tenant's facets (`treadle_facets` reads it from `facet_link`).
FACETS = "/var/treadle/facets"
STAGES = ("/tmp", "/mnt", "/media", "/srv", "/opt", "/var")

_CLONE_NEWNS = 0x00020000
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
_MOUNT_ATTR_NODEV = 0x4
_MOUNT_ATTR_NOEXEC = 0x8
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, -1)
_SYS_MOUNT_SETATTR = 442  # the same on every architecture (after the 424 unification)


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _setattr(path: str, flags: int, attr_set: int, attr_clr: int = 0) -> bool:
    """mount_setattr(2); False where the kernel lacks it (< 5.12)."""
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    result = LIBC.syscall(
        _SYS_MOUNT_SETATTR,
        ctypes.c_int(_AT_FDCWD),
        path.encode(),
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if result == 0:
        return True
    if ctypes.get_errno() == 38:  # ENOSYS
        return False
    check(result, f"mount_setattr {path}")
    return False


class Layout:
    """What every worker's root holds, worked out once in the zygote (about half a
    millisecond of stat calls that each worker would otherwise repeat)."""

    def __init__(self, python: Sequence[str]) -> None:
        self.python = list(python)
        self.binds: list[tuple[str, str, bool]] = [(p, p, True) for p in SYSTEM if _real_dir(p)]
        self.system = [p for p, _, _ in self.binds]
        self.links = [(p, os.readlink(p)) for p in SYSTEM if os.path.islink(p)]
        for name in ETC:
            path = f"/etc/{name}"
            real = os.path.realpath(path)
            if os.path.islink(path) and any(under(real, s) for s in self.system):
                self.links.append((path, os.readlink(path)))  # its target is in the tree
            elif os.path.exists(real):
                self.binds.append((path, real, os.path.isdir(real)))
        self.devices = [
            (name, os.stat(f"/dev/{name}").st_rdev)
            for name in DEVICES
            if os.path.exists(f"/dev/{name}")
        ]
        self.stage = next((s for s in STAGES if _real_dir(s)), "")
        self.dirs = _parents(
            [
                *(p if d else os.path.dirname(p) for p, _, d in self.binds),
                *(os.path.dirname(p) for p, _ in self.links),
                "/tmp",
                "/dev",
                "/proc",
            ]
        )

    def shown(self, code_dir: str | None, python: Iterable[str]) -> list[tuple[str, str, bool]]:
        """(path in the new root, host path, is a directory) of every read-only bind."""
        extra = outermost([*python, *([code_dir] if code_dir else [])])
        return [*self.binds, *((p, p, True) for p in extra if not self._in_system(p))]

    def _in_system(self, path: str) -> bool:
        return any(under(path, s) for s in self.system)


def _parents(paths: Iterable[str]) -> list[str]:
    """Every directory to make for `paths` (themselves included), parents first."""
    made: dict[str, None] = {}
    for path in paths:
        current = ""
        for part in path.strip("/").split("/"):
            current += "/" + part
            if part:
                made[current] = None
    return sorted(made, key=lambda p: p.count("/"))


_LAYOUT: Layout | None = None


def prepare(python: Sequence[str]) -> None:
    """Work out the layout now, in the zygote, so that every fork inherits it."""
    global _LAYOUT
    _LAYOUT = Layout(python)


def prepared() -> bool:
    return _LAYOUT is not None


def _real_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def enter(code_dir: str, tmp_dir: str, hide: Sequence[str], facets: str | None = None) -> None:
    """Make this process's root the new tree described in the module docstring.

    `hide`: what must not be shown, even as part of the interpreter's directories.
    `facets`: the tenant's facets directory, shown writable at `FACETS`.
    """
    layout = _layout()
    python = [p for p in layout.python if not any(under(h, p) for h in hide)]
    binds = layout.shown(code_dir, python)
    _assemble(layout, binds, facets, tmp_dir=tmp_dir, code_home=None)


def enter_spare(code_home: str, hide: Sequence[str], facets: str | None = None) -> None:
    """`enter` for a tenant's spare, which knows its tenant but not yet its function.

    The same tree, less two mounts made by `attach_function` once the function is
    known: /tmp stays an empty mount point, and the function's code goes in
    `code_home` (its tenant's directory of unpacked code), a tmpfs of mount points
    shown read-only. Both come as copies of the platform's mounts passed by fd, since
    after the pivot nothing of the host's tree can be bound any more."""
    layout = _layout()
    python = [p for p in layout.python if not any(under(h, p) for h in hide)]
    binds = layout.shown(None, python)
    if any(under(p, "/tmp") for p, _, _ in binds):
        raise OSError("the interpreter lives under /tmp: no spare can be confined ahead")
    home = None if under(code_home, "/tmp") else code_home  # else: `attach_function`
    _assemble(layout, binds, facets, tmp_dir=None, code_home=home)


def _layout() -> Layout:
    layout = _LAYOUT
    if layout is None:
        raise RuntimeError("rootfs.prepare was not called")
    if not layout.stage:
        raise OSError("no directory to assemble a root at")
    return layout


def _assemble(
    layout: Layout,
    binds: Sequence[tuple[str, str, bool]],
    facets: str | None,
    *,
    tmp_dir: str | None,
    code_home: str | None,
) -> None:
    """The new root at the stage, pivoted to: `binds` read-only, `tmp_dir` at /tmp (a
    spare: none yet), `code_home` an empty tmpfs of mount points (a spare's)."""
    stage = layout.stage
    outside = [(p, r, d) for p, r, d in binds if not under(p, "/tmp")]
    inside = [(p, r, d) for p, r, d in binds if under(p, "/tmp")]
    made = set(layout.dirs)
    shown = [p for p, _, _ in outside[len(layout.binds) :]] + ([code_home] if code_home else [])
    extra = [p for p in _parents(shown) if p not in made]
    if facets is not None:
        extra += [p for p in _parents([FACETS]) if p not in made and p not in extra]
    check(LIBC.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # First, so that nothing below propagates to the host's mount table.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Opened before the stage covers anything, after unshare: a bind mount's source
    # must be a mount of the caller's namespace.
    fds: list[tuple[str, int]] = []
    tmp_fd: int | None = None
    facets_fd: int | None = None
    umask = os.umask(0o022)
    try:
        if tmp_dir is not None:
            tmp_fd = os.open(tmp_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if facets is not None:
            facets_fd = os.open(facets, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for path, real, is_dir in [*outside, *inside]:
            flags = os.O_PATH | os.O_CLOEXEC | (os.O_DIRECTORY if is_dir else 0)
            fds.append((path, os.open(real, flags)))
        mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=256k")
        for path in [*layout.dirs, *extra]:
            os.mkdir(stage + path, 0o755)
        for path, _, is_dir in outside:
            if not is_dir:
                os.mknod(stage + path, stat.S_IFREG | 0o644)
        for path, fd in fds[: len(outside)]:
            mount(f"/proc/self/fd/{fd}", stage + path, None, MS_BIND | MS_REC)
        for path, target in layout.links:
            os.symlink(target, stage + path)
        if code_home is not None:
            mount("tmpfs", stage + code_home, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16k")
        _read_only(stage, [stage + p for p, _, _ in outside])
        if tmp_fd is not None:
            mount(f"/proc/self/fd/{tmp_fd}", stage + "/tmp", None, MS_BIND | MS_REC)
            if not _setattr(stage + "/tmp", 0, _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV):
                flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV
                mount(None, stage + "/tmp", None, flags)
        if facets_fd is not None:
            _writable(stage + FACETS, facets_fd)
        for path, fd in fds[len(outside) :]:
            _inside_tmp(stage, path, fd)
        _dev(stage + "/dev", layout.devices)
        # hidepid=invisible: other uids' /proc/<pid> do not exist for tenant code.
        proc_flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        mount("proc", stage + "/proc", "proc", proc_flags, "hidepid=invisible")
    finally:
        os.umask(umask)
        for _, fd in fds:
            os.close(fd)
        for maybe in (tmp_fd, facets_fd):
            if maybe is not None:
                os.close(maybe)
    _pivot(stage)


def attach_function(tmp_fd: int, code_fd: int, code_dir: str, code_home: str) -> None:
    """A spare's last two mounts (see `enter_spare`), still as root, after the pivot."""
    if os.path.dirname(code_dir) != code_home:
        raise PermissionError(f"{code_dir} is not code of this spare's tenant")
    attach(tmp_fd, "/tmp")
    if not _setattr("/tmp", 0, _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV):
        mount(None, "/tmp", None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    if under(code_dir, "/tmp"):
        _inside_tmp("", code_dir, code_fd, attach)
        return
    # The code home went read-only with the rest of the tree: writable for one mkdir.
    attrs = _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV
    if not _setattr(code_home, 0, 0, _MOUNT_ATTR_RDONLY):
        mount(None, code_home, None, MS_REMOUNT | MS_NOSUID | MS_NODEV)
    os.mkdir(code_dir, 0o755)
    attach(code_fd, code_dir)
    if not _setattr(code_home, _AT_RECURSIVE, attrs):
        mount(None, code_dir, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        mount(None, code_home, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _writable(target: str, fd: int) -> None:
    # After the tree went read-only: this bind alone stays writable (no exec, no devices).
    mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
    attrs = _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV | _MOUNT_ATTR_NOEXEC
    if not _setattr(target, 0, attrs, _MOUNT_ATTR_RDONLY):
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _inside_tmp(
    stage: str, path: str, fd: int, place: Callable[[int, str], None] | None = None
) -> None:
    """Show a directory whose usual path is under /tmp (a data dir there: tests, dev).

    Its mount point is made in the environment's /tmp, which the tenant writes: a
    component it replaced by a symlink is refused rather than followed (only its own
    namespace could be misled, but the worker then does not start). `place`: how `fd`
    becomes a mount there (default: a bind of the path it holds).
    """
    current = stage
    for part in path.strip("/").split("/"):
        current += "/" + part
        try:
            os.mkdir(current, 0o755)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                raise PermissionError(f"{current} is not a directory") from None
    if place is None:
        mount(f"/proc/self/fd/{fd}", current, None, MS_BIND | MS_REC)
    else:
        place(fd, current)
    attrs = _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV
    if not _setattr(current, _AT_RECURSIVE, attrs):
        mount(None, current, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _read_only(stage: str, binds: Sequence[str]) -> None:
    attrs = _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV
    if _setattr(stage, _AT_RECURSIVE, attrs):
        return
    # Older kernels: a remount per mount (submounts of a bind keep their flags).
    for target in binds:
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        mount(None, target, None, flags)
    mount(None, stage, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _dev(dev: str, devices: Sequence[tuple[str, int]]) -> None:
    # Nodes made here rather than bound from the host's /dev: no mount each.
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=16k,nr_inodes=64")
    for name, rdev in devices:
        os.mknod(f"{dev}/{name}", stat.S_IFCHR | 0o666, rdev)
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")
    mount(None, dev, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


def _pivot(stage: str) -> None:
    os.chdir(stage)
    # pivot_root(".", "."): the old root ends up stacked on the new one, and is
    # detached at once; nothing of it stays reachable.
    if LIBC.syscall(_SYS_PIVOT_ROOT, b".", b".") == 0:
        unmount(".")
    else:
        # The initramfs root ("rootfs") cannot be pivoted away from: move and chroot
        # (tenant code has no CAP_SYS_CHROOT to climb out with).
        mount(".", "/", None, MS_MOVE)
        check(LIBC.chroot(b"."), "chroot")
    os.chdir("/")
