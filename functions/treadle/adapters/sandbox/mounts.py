"""Mount primitives through libc, shared by the worker (`rootfs`) and the platform (`envtmp`).

Stdlib only: the zygote imports it, and every worker inherits it from there.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
# The new mount API (Linux 5.2; the same numbers on every architecture): a copy of a
# mount, detached, held by an fd that another process's namespace can attach.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_OPEN_TREE_CLONE = 1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4

LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once in the zygote, not per fork
# Looked up now, in the zygote: a worker would otherwise pay a dlsym each, per fork.
for _name in ("mount", "umount2", "unshare", "syscall", "chroot", "prctl"):
    getattr(LIBC, _name)


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    result = LIBC.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    check(result, f"mount {target}")


def unmount(target: str) -> None:
    """Detach `target` now; its memory goes when the last process using it lets go."""
    check(LIBC.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def clone_tree(path: str) -> int:
    """An fd holding a detached copy of the mount tree at `path` (`attach` places it)."""
    flags = _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE
    fd = int(LIBC.syscall(_SYS_OPEN_TREE, ctypes.c_int(_AT_FDCWD), path.encode(), flags))
    if fd < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"open_tree {path}: {os.strerror(errno)}")
    return fd


def has_open_tree() -> bool:
    """Whether the kernel has the new mount API (open_tree without a clone: just an fd)."""
    fd = int(LIBC.syscall(_SYS_OPEN_TREE, ctypes.c_int(_AT_FDCWD), b"/", _OPEN_TREE_CLOEXEC))
    if fd < 0:
        return False
    os.close(fd)
    return True


def attach(fd: int, target: str) -> None:
    """Mount the tree `clone_tree` gave at `target`, in this process's namespace."""
    result = LIBC.syscall(
        _SYS_MOVE_MOUNT,
        ctypes.c_int(fd),
        b"",
        ctypes.c_int(_AT_FDCWD),
        target.encode(),
        ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
    )
    check(result, f"move_mount {target}")


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def outermost(paths: Iterable[str]) -> list[str]:
    """`paths` without those inside another of them."""
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(under(path, k) for k in kept):
            kept.append(path)
    return kept
