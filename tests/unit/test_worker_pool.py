"""The sandbox's worker pool (`pool.WorkerPool`): reuse, limits, eviction, preparation.

Fakes stand in for worker processes: the pool only reads a worker's key, generation and
liveness, and discards it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import pytest

from treadle.adapters.sandbox.handle import WorkerHandle
from treadle.adapters.sandbox.pool import WorkerPool


class FakeProc:
    def __init__(self) -> None:
        self.exited = threading.Event()

    def running(self) -> bool:
        return not self.exited.is_set()


class FakeWorker:
    def __init__(self, key: str, generation: int) -> None:
        self.key = key
        self.generation = generation
        self.proc = FakeProc()
        self.discarded = False

    def discard(self) -> None:
        self.discarded = True
        self.proc.exited.set()


class Spawner:
    def __init__(self) -> None:
        self.made: list[FakeWorker] = []

    def __call__(self, key: str) -> Any:
        def spawn(generation: int) -> WorkerHandle:
            worker = FakeWorker(key, generation)
            self.made.append(worker)
            return cast(WorkerHandle, worker)

        return spawn


def _pool(
    max_warm: int = 2, max_workers: int = 3, idle_s: float | None = None
) -> tuple[WorkerPool, list[str]]:
    gone: list[str] = []
    pool = WorkerPool(
        max_warm=max_warm, max_workers=max_workers, environment_gone=gone.append, idle_s=idle_s
    )
    return pool, gone


def test_a_released_worker_serves_the_next_invoke_of_its_version() -> None:
    pool, _ = _pool()
    spawn = Spawner()
    first = pool.acquire("a", spawn("a"))
    pool.release(first, healthy=True)
    assert pool.acquire("a", spawn("a")) is first
    assert len(spawn.made) == 1


def test_an_unhealthy_worker_is_discarded_not_kept() -> None:
    pool, _ = _pool()
    spawn = Spawner()
    first = pool.acquire("a", spawn("a"))
    pool.release(first, healthy=False)
    assert cast(FakeWorker, first).discarded
    assert pool.acquire("a", spawn("a")) is not first


def test_idle_workers_beyond_the_warm_count_are_discarded() -> None:
    pool, _ = _pool(max_warm=1)
    spawn = Spawner()
    one, two = pool.acquire("a", spawn("a")), pool.acquire("a", spawn("a"))
    pool.release(one, healthy=True)
    pool.release(two, healthy=True)
    assert [w.discarded for w in spawn.made] == [False, True]


def test_at_the_limit_a_start_evicts_the_least_recently_used_idle_worker() -> None:
    pool, gone = _pool(max_workers=2)
    spawn = Spawner()
    a, b = pool.acquire("a", spawn("a")), pool.acquire("b", spawn("b"))
    pool.release(a, healthy=True)
    pool.release(b, healthy=True)
    pool.acquire("c", spawn("c"))
    assert cast(FakeWorker, a).discarded and not cast(FakeWorker, b).discarded
    assert gone == ["a"]  # a's last worker: its environment goes with it


def test_a_worker_busy_when_its_version_is_evicted_is_not_kept() -> None:
    pool, _ = _pool()
    spawn = Spawner()
    busy = pool.acquire("a", spawn("a"))
    pool.evict("a")
    pool.release(busy, healthy=True)
    assert cast(FakeWorker, busy).discarded
    assert pool.acquire("a", spawn("a")).generation == 1


def test_a_failed_start_gives_its_place_back() -> None:
    pool, _ = _pool(max_workers=1)

    def broken(_generation: int) -> WorkerHandle:
        raise OSError("no fork")

    with pytest.raises(OSError):
        pool.acquire("a", broken)
    assert pool.acquire("a", Spawner()("a")) is not None  # would wait forever if counted


def test_an_invoke_during_a_prepare_waits_for_the_prepared_worker() -> None:
    pool, _ = _pool()
    spawn = Spawner()
    initialising = threading.Event()
    go_on = threading.Event()

    def ready(_worker: WorkerHandle) -> bool:
        initialising.set()
        go_on.wait(5)
        return True

    got: list[WorkerHandle] = []
    preparing = threading.Thread(target=pool.prepare, args=("a", spawn("a"), ready))
    preparing.start()
    assert initialising.wait(5)
    invoking = threading.Thread(target=lambda: got.append(pool.acquire("a", spawn("a"))))
    invoking.start()
    time.sleep(0.05)
    assert not got  # waits rather than starting a second worker
    go_on.set()
    preparing.join(5)
    invoking.join(5)
    assert got == [spawn.made[0]] and len(spawn.made) == 1


def test_prepare_starts_nothing_for_a_version_with_a_worker_or_when_full() -> None:
    pool, _ = _pool(max_workers=2)
    spawn = Spawner()
    a = pool.acquire("a", spawn("a"))
    assert not pool.prepare("a", spawn("a"), lambda _w: True)  # busy
    pool.release(a, healthy=True)
    assert not pool.prepare("a", spawn("a"), lambda _w: True)  # idle
    pool.acquire("b", spawn("b"))
    assert not pool.prepare("c", spawn("c"), lambda _w: True)  # full: a is not evicted
    assert len(spawn.made) == 2 and not cast(FakeWorker, a).discarded


def test_a_prepared_worker_that_is_not_ready_is_dropped() -> None:
    pool, _ = _pool()
    spawn = Spawner()
    assert not pool.prepare("a", spawn("a"), lambda _w: False)
    assert spawn.made[0].discarded
    assert pool.acquire("a", spawn("a")) is not spawn.made[0]


def test_idle_workers_beyond_a_versions_last_used_one_stop_after_the_idle_time() -> None:
    pool, gone = _pool(max_warm=4, max_workers=8, idle_s=10)
    spawn = Spawner()
    a = [pool.acquire("a", spawn("a")) for _ in range(3)]
    b = pool.acquire("b", spawn("b"))
    for worker in [*a, b]:
        pool.release(worker, healthy=True)
    released = time.monotonic()
    pool.watch(now=released + 5)
    assert not any(w.discarded for w in spawn.made)
    pool.watch(now=released + 11)
    assert [w.discarded for w in spawn.made] == [True, True, False, False]
    assert gone == []  # each version keeps a worker, and its environment
    assert pool.acquire("a", spawn("a")) is a[2]  # the one kept serves the next invoke


def test_without_an_idle_time_idle_workers_stay() -> None:
    pool, _ = _pool(max_warm=4, max_workers=8)
    spawn = Spawner()
    for worker in [pool.acquire("a", spawn("a")) for _ in range(3)]:
        pool.release(worker, healthy=True)
    pool.watch(now=time.monotonic() + 3600)
    assert not any(w.discarded for w in spawn.made)
