"""The sandbox's workers by function version: idle, busy or starting, and when one more
may start. The policy only; `sandbox` makes the processes and runs invocations on them.

- A version (`key`) keeps at most `max_warm` idle workers; the sandbox at most
  `max_workers` in all. A start past that evicts the least recently used idle worker of
  any version, or waits for one to be released.
- `evict(key)` bumps the version's generation: its workers busy now are discarded when
  released, not kept.
- A version being prepared (`prepare`) makes its invokes wait for that worker rather
  than start another.
- When a version's last worker goes, `environment_gone(key)` runs under the pool's lock,
  so that no worker of that version starts meanwhile (its /tmp is removed there).
- Idle workers of a version beyond its most recently used one stop after `idle_s`: a
  burst's workers do not stay resident (each is tens of MiB) while its executions wait,
  and the version keeps one warm worker for its next invoke.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from treadle.adapters.sandbox.handle import WorkerHandle

Spawn = Callable[[int], WorkerHandle]  # the key's generation -> its new worker


class WorkerPool:
    def __init__(
        self,
        *,
        max_warm: int,
        max_workers: int,
        environment_gone: Callable[[str], None],
        idle_s: float | None = None,
    ) -> None:
        self._idle_s = idle_s  # None: idle workers stay until evicted
        self._max_warm = max(1, max_warm)
        self._max_workers = max(1, max_workers)
        self._environment_gone = environment_gone
        self._lock = threading.Lock()
        self._capacity = threading.Condition(self._lock)
        self._idle: dict[str, list[WorkerHandle]] = {}
        self._lru: OrderedDict[WorkerHandle, None] = OrderedDict()  # idle, oldest first
        self._busy: set[WorkerHandle] = set()
        self._spawning = 0
        self._spawning_keys: Counter[str] = Counter()
        self._preparing: set[str] = set()  # keys whose first worker `prepare` is starting
        self._generations: dict[str, int] = {}
        self.closed = False

    def open(self) -> None:
        with self._lock:
            self.closed = False

    def close(self) -> tuple[list[WorkerHandle], list[WorkerHandle]]:
        """No more acquires; (the idle workers, now forgotten; the busy ones)."""
        with self._lock:
            self.closed = True
            idle = list(self._lru)
            busy = list(self._busy)
            self._idle.clear()
            self._lru.clear()
            self._capacity.notify_all()
        return idle, busy

    def acquire(self, key: str, spawn: Spawn) -> WorkerHandle:
        """An idle worker of `key`, or a new one from `spawn` once there is room."""
        with self._lock:
            while True:
                if self.closed:
                    raise RuntimeError("sandbox is closed")
                handle = self._pop_idle_locked(key)
                if handle is not None:
                    self._busy.add(handle)
                    return handle
                if key in self._preparing:  # its worker is a moment away (`prepare`)
                    self._capacity.wait()
                    continue
                if self._count_locked() < self._max_workers:
                    break
                if not self._evict_lru_locked():
                    self._capacity.wait()
            generation = self._start_spawn_locked(key)
        handle = None
        try:
            handle = spawn(generation)
        finally:
            with self._lock:
                self._spawned_locked(key, handle)
                self._capacity.notify()
        return handle

    def prepare(self, key: str, spawn: Spawn, ready: Callable[[WorkerHandle], bool]) -> bool:
        """Start `key`'s first worker now, if it has none and one fits without evicting;
        `ready(worker)` waits for it (False: not worth keeping). Invokes of `key` wait
        meanwhile. Whether a worker was kept."""
        with self._lock:
            if (
                self.closed
                or key in self._idle
                or key in self._spawning_keys
                or key in self._preparing
                or any(busy.key == key for busy in self._busy)
                or self._count_locked() >= self._max_workers
            ):
                return False
            self._preparing.add(key)
            generation = self._start_spawn_locked(key)
        handle = None
        healthy = False
        try:
            try:
                handle = spawn(generation)
            finally:
                with self._lock:
                    # Busy while it initialises: the watchdog samples its memory.
                    self._spawned_locked(key, handle)
            healthy = ready(handle)
        finally:
            with self._lock:
                self._preparing.discard(key)
                self._capacity.notify_all()  # the invokes waiting for this worker
            if handle is not None:
                self.release(handle, healthy)
        return handle is not None and healthy

    def release(self, handle: WorkerHandle, healthy: bool) -> None:
        with self._lock:
            self._busy.discard(handle)
            keep = (
                healthy
                and not self.closed
                and handle.generation == self._generations.get(handle.key, 0)
                and len(self._idle.get(handle.key, ())) < self._max_warm
                and not handle.proc.exited.is_set()
            )
            if keep:
                handle.idle_since = time.monotonic()
                self._idle.setdefault(handle.key, []).append(handle)
                self._lru[handle] = None
            self._capacity.notify()
        if not keep:
            handle.discard()

    def evict(self, key: str) -> list[WorkerHandle]:
        """`key`'s idle workers, forgotten (to discard); its busy ones are not kept."""
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            handles = self._idle.pop(key, [])
            for handle in handles:
                self._lru.pop(handle, None)
            self._capacity.notify_all()
        return handles

    def watch(self, now: float | None = None) -> list[WorkerHandle]:
        """The busy workers; idle ones that died, or that outstayed `idle_s` beside a
        more recent one of their version, are discarded."""
        cutoff = None if self._idle_s is None else (now or time.monotonic()) - self._idle_s
        with self._lock:
            busy = list(self._busy)
            gone = [h for h in self._lru if h.proc.exited.is_set()]
            if cutoff is not None:
                for idle in self._idle.values():
                    # In release order: the last is the one the next invoke takes.
                    gone += [h for h in idle[:-1] if h.idle_since <= cutoff]
            gone = list(dict.fromkeys(gone))
            for handle in gone:
                self._forget_idle_locked(handle)
        for handle in gone:
            handle.discard()
        return busy

    # -- under the lock -------------------------------------------------------------

    def _count_locked(self) -> int:
        return len(self._lru) + len(self._busy) + self._spawning

    def _start_spawn_locked(self, key: str) -> int:
        self._spawning += 1
        self._spawning_keys[key] += 1
        return self._generations.get(key, 0)

    def _spawned_locked(self, key: str, handle: WorkerHandle | None) -> None:
        self._spawning -= 1
        self._spawning_keys[key] -= 1
        if not self._spawning_keys[key]:
            del self._spawning_keys[key]
        if handle is not None:
            self._busy.add(handle)

    def _pop_idle_locked(self, key: str) -> WorkerHandle | None:
        while idle := self._idle.get(key):
            handle = idle[-1]  # most recently used: the others may age out
            self._forget_idle_locked(handle)
            if handle.proc.running():
                return handle
            handle.discard()
        return None

    def _forget_idle_locked(self, handle: WorkerHandle) -> None:
        self._lru.pop(handle, None)
        idle = self._idle.get(handle.key, [])
        if handle in idle:
            idle.remove(handle)
        if not idle:
            self._idle.pop(handle.key, None)

    def _evict_lru_locked(self) -> bool:
        if not self._lru:
            return False
        handle = next(iter(self._lru))
        self._forget_idle_locked(handle)
        handle.discard()
        key = handle.key
        if (
            key not in self._idle
            and key not in self._spawning_keys
            and not any(busy.key == key for busy in self._busy)
        ):
            self._environment_gone(key)  # its last worker: the environment goes too
        return True
