"""One core per server process: the interpreter's lock changes hands on one core.

A server process runs many Python threads (the HTTP pool, the invocation lane, the
event loop) that take turns at one GIL. Each SQLite call, socket read or poll releases
it; on two or more cores the thread that was waiting for it then wakes on another core
and the thread that released it, back a few microseconds later, waits in its turn: a
futex sleep and a wake-up across cores, for every release. W2 measured 80 such blocked
waits per execution in the server and a third of its CPU in the kernel, most of it the
scheduler. With all the process's threads on one core (measured interleaved, one
process, 3 runs each): 85 -> 16 waits per execution, server CPU 7.6 -> 5.1 ms per
execution, system time 2.1 -> 0.9 ms, W2 124 -> 179 completed/s. The process used
about one core anyway (one GIL); the sandbox workers, which are processes of their
own, run on every core.

So each server process puts its threads on one core, and what it starts runs on all
of them again: the zygote (its argument, hence its workers) and the other processes of
`--processes N` (`ENV_CPUS`, the cores in the first process's order), each of which
then takes its own: process i the i-th, modulo their count. The first process's core
is the one it is running on when it pins, so that servers started independently on
one machine (two data directories, a test suite's) spread over the cores instead of
all taking the first. On one core there is nothing to do.
"""

from __future__ import annotations

import logging
import os

from treadle.settings import ENV_CPUS

log = logging.getLogger(__name__)

# The cores this process could use before it pinned itself, in its order: what its
# children get.
_allowed: tuple[int, ...] | None = None


def _current_core() -> int | None:
    """The core this thread last ran on (field 39 of /proc/self/stat)."""
    try:
        with open("/proc/self/stat") as f:
            raw = f.read()
        return int(raw[raw.rindex(")") + 2 :].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def core_order() -> tuple[int, ...]:
    """The cores this process may use, in the order processes take them: as its parent
    passed them on (`ENV_CPUS`) when the parent had pinned itself already, else those it
    was started with, from the one it runs on."""
    if _allowed is not None:
        return _allowed
    passed = os.environ.get(ENV_CPUS)
    if passed:
        try:
            return tuple(int(c) for c in passed.split(","))
        except ValueError:
            log.warning("ignoring %s=%r: not a list of core numbers", ENV_CPUS, passed)
    cores = sorted(os.sched_getaffinity(0))
    now = _current_core()
    if now in cores:
        at = cores.index(now)
        cores = cores[at:] + cores[:at]
    return tuple(cores)


def pin(index: int) -> int | None:
    """Put this process's threads, those running and those to come, on one core: the
    `index`-th of `core_order` (modulo their count). The core, or None if there is one."""
    global _allowed
    cores = core_order()
    if len(cores) < 2:
        return None
    core = cores[index % len(cores)]
    _allowed = cores
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), {core})
            except ProcessLookupError:
                continue  # a thread that ended meanwhile
    except OSError as exc:  # a cpuset that forbids it: run as before
        log.warning("could not keep the server on one core: %s", exc)
        unpin()
        return None
    return core


def unpin() -> None:
    """Every thread of this process back on all its allowed cores."""
    global _allowed
    cores = _allowed
    if cores is None:
        return
    _allowed = None
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), set(cores))
        except OSError:
            continue


def children_cores() -> str:
    """What a child started from a pinned process is to run on ("" if not pinned):
    for `ENV_CPUS`, or the zygote's argument (it widens its cores itself: `zygote.main`)."""
    return ",".join(str(c) for c in _allowed) if _allowed is not None else ""
