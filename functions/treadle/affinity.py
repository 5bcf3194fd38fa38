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

So each server process puts its threads on one core (process i on the i-th allowed
core, modulo their count), and what it starts runs on all of them again: the zygote
(`unpinned_argument`, hence its workers) and the other processes of `--processes N`
(`ENV_CPUS`), each of which then takes its own core. On one core there is nothing to do.
"""

from __future__ import annotations

import logging
import os

from treadle.settings import ENV_CPUS

log = logging.getLogger(__name__)

# The cores this process could use before it pinned itself: what its children get.
_allowed: frozenset[int] | None = None


def allowed_cores() -> frozenset[int]:
    """The cores this process may use: those it was started with, or those its parent
    passed on (`ENV_CPUS`) when the parent had pinned itself already."""
    if _allowed is not None:
        return _allowed
    passed = os.environ.get(ENV_CPUS)
    if passed:
        try:
            return frozenset(int(c) for c in passed.split(","))
        except ValueError:
            log.warning("ignoring %s=%r: not a list of core numbers", ENV_CPUS, passed)
    return frozenset(os.sched_getaffinity(0))


def pin(index: int) -> int | None:
    """Put this process's threads, those running and those to come, on one core: the
    `index`-th allowed one (modulo their count). The core, or None if there is one only."""
    global _allowed
    cores = allowed_cores()
    if len(cores) < 2:
        return None
    core = sorted(cores)[index % len(cores)]
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
            os.sched_setaffinity(int(tid), cores)
        except OSError:
            continue


def children_cores() -> str:
    """What a child started from a pinned process is to run on ("" if not pinned):
    for `ENV_CPUS`, or the zygote's argument (it widens its cores itself: `zygote.main`)."""
    return ",".join(str(c) for c in sorted(_allowed)) if _allowed is not None else ""
