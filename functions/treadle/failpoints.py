"""Failpoints: crash the platform process at a durability boundary (tests only).

`TREADLE_FAILPOINT` (`settings.ENV_FAILPOINT`) is read once, when this module is first
imported, and chooses what `boundary` is for the life of the process:

- unset: `boundary` is a function that returns at once. Production pays one call of an
  empty function per boundary: no environment read, no dict lookup, no lock.
- `<kind>:<before|after>:<n>`: the process ends with `os._exit(CRASH_EXIT_CODE)` just
  before (or just after) the n-th boundary of that kind, n counting from 1. Kinds:
  `commit` (a SQLite write transaction's COMMIT), `ref` (a Git ref compare-and-swap),
  `facet` (a facet created or deleted: the platform's only writes of facet files; the
  rows inside are the tenant's own), `timer` (a due timer handed to its handler), and
  `any` (the n-th boundary of whatever kind, counted in the order this process met
  them). `os._exit` skips every `finally`, atexit hook and buffer flush: kill -9 at a
  chosen instant instead of a random one.
- `count:<file>`: nothing crashes; `<file>` holds the number of boundaries seen so far
  per `<kind>:<position>` as JSON, rewritten at each boundary so it is right whenever
  the process stops (the boundary test reads it to know how many crash points exist).

Where the calls are: `SqliteFile.transaction` (every SQLite adapter commits there),
`SqliteRefStore.compare_and_swap`, `SqliteFacetStore.create/delete` and the embedded
timer loop (`TimerScheduler._run`). The domain makes no call: it must not read the
environment, and every boundary it causes already passes through a port whose
adapter holds the hook (the engine commits through `ExecutionStore` and dispatches
timers through `Dispatcher`), so the adapters see each one without the engine
knowing failpoints exist. On the AWS backend: every write of the DynamoDB client
(`adapters/aws/failpoint_hooks.py`, botocore hooks registered only when this is on),
`DynamoRefStore.compare_and_swap`, and a timer handed to the engine by the orchestrator
(`sqs_dispatcher.handle_messages`); facets are the local ones there in emulated mode.

One process only: the variable is removed from the environment once read, and a
forked child turns its copy of the hook off, so a worker the server starts neither
counts nor crashes in the server's place.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Literal

from treadle.settings import ENV_FAILPOINT

Position = Literal["before", "after"]
Hook = Callable[["Kind", Position], None]
Exit = Callable[[int], object]

# The exit status of a crash at a failpoint: the test tells it from any other death.
CRASH_EXIT_CODE = 86
ANY = "any"
_POSITIONS: tuple[Position, ...] = ("before", "after")


class Kind(StrEnum):
    COMMIT = "commit"
    REF = "ref"
    FACET = "facet"
    TIMER = "timer"


def _off(kind: Kind, position: Position) -> None:
    return None


class Crash:
    """Exit at the n-th `position` boundary of `kind` (None: of any kind)."""

    def __init__(
        self, kind: Kind | None, position: Position, n: int, *, exit: Exit = os._exit
    ) -> None:
        self.kind, self.position, self.n = kind, position, n
        self._exit = exit
        self._seen = 0
        self._lock = threading.Lock()
        self._active = True
        os.register_at_fork(after_in_child=self._disarm)

    def _disarm(self) -> None:
        self._active = False

    def __call__(self, kind: Kind, position: Position) -> None:
        if position != self.position or (self.kind is not None and kind is not self.kind):
            return
        with self._lock:
            if not self._active:
                return
            self._seen += 1
            if self._seen == self.n:
                self._exit(CRASH_EXIT_CODE)


class Count:
    """Count every boundary by kind and position, into `path` as it goes."""

    def __init__(self, path: Path) -> None:
        self.counts: dict[str, int] = {}
        self._file = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._active = True
        self._write()
        os.register_at_fork(after_in_child=self._disarm)

    def _disarm(self) -> None:
        self._active = False

    def _write(self) -> None:
        self._file.seek(0)
        self._file.write(json.dumps(self.counts, sort_keys=True))
        self._file.truncate()
        self._file.flush()  # in the OS: a later kill -9 or os._exit keeps it

    def __call__(self, kind: Kind, position: Position) -> None:
        with self._lock:
            if not self._active:
                return
            key = f"{kind.value}:{position}"
            self.counts[key] = self.counts.get(key, 0) + 1
            self._write()


def resolve(spec: str | None, *, exit: Exit = os._exit) -> Hook:
    """The hook a `TREADLE_FAILPOINT` value asks for (ValueError naming what is wrong)."""
    if not spec:
        return _off
    head, _, rest = spec.partition(":")
    if head == "count":
        if not rest:
            raise ValueError(f"{ENV_FAILPOINT}=count:<file> needs a file, got {spec!r}")
        return Count(Path(rest))
    kinds = {k.value: k for k in Kind}
    position, _, number = rest.partition(":")
    if head != ANY and head not in kinds:
        names = ", ".join([*kinds, ANY, "count"])
        raise ValueError(f"{ENV_FAILPOINT}={spec!r}: the kind must be one of {names}")
    if position not in _POSITIONS:
        raise ValueError(f"{ENV_FAILPOINT}={spec!r}: the position must be before or after")
    if not number.isdigit() or int(number) < 1:
        raise ValueError(f"{ENV_FAILPOINT}={spec!r}: the count must be a whole number >= 1")
    pos: Position = "before" if position == "before" else "after"
    return Crash(None if head == ANY else kinds[head], pos, int(number), exit=exit)


# Resolved once: callers bind `boundary` at import and call it directly.
boundary: Hook = resolve(os.environ.pop(ENV_FAILPOINT, None))


def enabled() -> bool:
    """Whether this process crashes or counts at boundaries (adapters that would pay
    for more than a call, such as registering botocore hooks, ask first)."""
    return boundary is not _off
