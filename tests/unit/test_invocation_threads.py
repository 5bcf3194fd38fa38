"""The SDK's per-invocation threads, kept for the worker's life (`durable_channel.
_InvocationThreads`): the same two threads serve invocation after invocation, each task
starts in an empty contextvars context as on a new thread, the wrapper still waits for
its own tasks, and a wrapper opened inside another gets threads of its own."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator

import pytest

from treadle.adapters.sandbox.durable_channel import _InvocationThreads

REQUEST = contextvars.ContextVar[str]("request")


@pytest.fixture(autouse=True)
def fresh_threads() -> Iterator[None]:
    # The kept pool is the process's: each test starts without one and ends without one.
    _InvocationThreads._kept, _InvocationThreads._kept_busy = None, False
    yield
    kept = _InvocationThreads._kept
    if kept is not None:
        kept.shutdown(wait=True)
    _InvocationThreads._kept, _InvocationThreads._kept_busy = None, False


def _invocation(name: str) -> tuple[set[int], str | None]:
    """What the SDK's wrapper does: a handler task that submits the batcher beside it."""
    seen: dict[str, object] = {}

    def batcher() -> int:
        return threading.get_ident()

    def handler() -> tuple[int, int]:
        seen["before"] = REQUEST.get(None)
        REQUEST.set(name)
        return threading.get_ident(), pool.submit(batcher).result()

    with _InvocationThreads(max_workers=2, thread_name_prefix="dex-handler") as pool:
        future = pool.submit(handler)
    assert future.done()  # the `with` waited for it
    mine, batcher_thread = future.result()
    return {mine, batcher_thread}, seen["before"]  # type: ignore[return-value]


def test_invocations_reuse_the_same_two_threads_and_see_no_earlier_context() -> None:
    first, leaked_into_first = _invocation("a")
    second, leaked_into_second = _invocation("b")
    assert len(first) == 2 and first == second
    assert leaked_into_first is None and leaked_into_second is None


def test_a_wrapper_opened_while_another_holds_the_threads_gets_its_own() -> None:
    results: dict[str, object] = {}
    release = threading.Event()

    def inner() -> int:
        # Both kept threads are busy (this task and the waiter, which waits for this
        # one): on the kept pair the nested task would never start.
        with _InvocationThreads(max_workers=2) as nested:
            results["inner"] = nested.submit(threading.get_ident).result(timeout=5)
        release.set()
        return threading.get_ident()

    with _InvocationThreads(max_workers=2) as outer:
        waiter = outer.submit(release.wait, 10)
        outer_thread = outer.submit(inner)
    assert waiter.result() is True
    assert results["inner"] != outer_thread.result()
    # The outer wrapper gave the kept pair back: the next invocation takes it again.
    assert not _InvocationThreads._kept_busy


def test_a_task_s_failure_reaches_its_future_and_the_threads_stay_usable() -> None:
    def boom() -> None:
        raise ValueError("handler failed")

    with _InvocationThreads(max_workers=2) as pool:
        failed = pool.submit(boom)
    with pytest.raises(ValueError, match="handler failed"):
        failed.result()
    with _InvocationThreads(max_workers=2) as pool:
        assert pool.submit(lambda: 42).result(timeout=5) == 42
