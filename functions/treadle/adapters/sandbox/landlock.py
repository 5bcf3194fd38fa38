"""Landlock through ctypes: a process confines its own file access (Linux >= 5.13).

Used where the platform cannot change uids (it does not run as root): the worker is
then the developer's own uid, so file modes protect nothing from it, but Landlock can
still keep it to an allow-list of directories. No root, no setup, inherited by every
process the tenant starts and impossible to lift. Stdlib only: runs in the worker.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

# The same numbers on every architecture: added after the syscall tables were unified.
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
_ABI1_ALL = (1 << 13) - 1  # execute ... make_sym
READ = EXECUTE | READ_FILE | READ_DIR
DEVICE = READ | WRITE_FILE | TRUNCATE | IOCTL_DEV
# Rights that make sense on a regular file (a rule on a file may hold no others).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
# ABI 6: no signals to, and no abstract unix sockets of, processes outside the domain
# (the server, the developer's other programs run as the same uid).
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
_SCOPE_SIGNAL = 1 << 1

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _syscall(number: int, *args: object) -> int:
    # Every argument as a full register: ctypes would pass a bare int as a C int.
    return int(_LIBC.syscall(ctypes.c_long(number), *args))


def _failed(what: str) -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, f"landlock {what}: {os.strerror(errno)}")


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when it has none (or it is disabled)."""
    try:
        version = _syscall(
            _SYS_CREATE_RULESET,
            ctypes.c_void_p(None),
            ctypes.c_size_t(0),
            ctypes.c_uint32(_CREATE_RULESET_VERSION),
        )
    except (AttributeError, OSError):
        return 0
    return max(version, 0)


def handled_rights(abi: int) -> int:
    """Every file right this ABI knows: what is not granted below is denied."""
    rights = _ABI1_ALL
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def _allow(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # absent on this system: nothing to allow
    try:
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(rights, fd)
        added = _syscall(
            _SYS_ADD_RULE,
            ctypes.c_long(ruleset),
            ctypes.c_long(_RULE_PATH_BENEATH),
            ctypes.byref(rule),
            ctypes.c_uint32(0),
        )
        if added != 0:
            raise _failed(f"add rule for {path}")
    finally:
        os.close(fd)


def restrict(
    abi: int, *, read: Iterable[str], write: Iterable[str], devices: Iterable[str]
) -> None:
    """From now on, this process and its children reach only these directories.

    `read`: read and execute beneath; `write`: every right beneath; `devices`: read and
    write existing files (/dev/null, a tty), create nothing.
    """
    handled = handled_rights(abi)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8  # only handled_access_fs: accepted by every ABI
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
        size = ctypes.sizeof(_RulesetAttr)
    ruleset = _syscall(
        _SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        raise _failed("create ruleset")
    try:
        for path in read:
            _allow(ruleset, path, READ & handled)
        for path in devices:
            _allow(ruleset, path, DEVICE & handled)
        for path in write:
            _allow(ruleset, path, handled)
        # Required to restrict oneself without CAP_SYS_ADMIN; also keeps setuid
        # binaries from running with more than the worker has.
        if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _failed("no_new_privs")
        if _syscall(_SYS_RESTRICT_SELF, ctypes.c_long(ruleset), ctypes.c_uint32(0)) != 0:
            raise _failed("restrict self")
    finally:
        os.close(ruleset)
