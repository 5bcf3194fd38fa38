"""Synchronous invokes are woken by the close of their execution; nothing else is kept."""

from __future__ import annotations

import threading
import time

from treadle.app.completion import CompletionNotifier


def test_closes_nobody_waits_for_leave_nothing_behind() -> None:
    notifier = CompletionNotifier()
    for i in range(1000):
        notifier.execution_closed(f"arn-{i}")
    assert notifier.waiters() == 0


def test_every_waiter_is_woken_by_the_close_and_then_forgotten() -> None:
    notifier = CompletionNotifier()
    closed = threading.Event()
    woken: list[float] = []

    def waiter() -> None:
        started = time.monotonic()
        assert notifier.wait("arn", 30, closed.is_set)
        woken.append(time.monotonic() - started)

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for thread in threads:
        thread.start()
    while notifier.waiters() == 0:
        time.sleep(0.01)
    time.sleep(0.05)
    closed.set()
    notifier.execution_closed("arn")
    for thread in threads:
        thread.join(5)
    # Woken by the signal, not by the one-second poll.
    assert len(woken) == 2 and max(woken) < 0.9
    assert notifier.waiters() == 0


def test_a_wait_that_times_out_is_forgotten() -> None:
    notifier = CompletionNotifier()
    assert notifier.wait("arn", 0.05, lambda: False) is False
    assert notifier.waiters() == 0


def test_a_stop_ends_every_wait_and_the_later_ones_at_once() -> None:
    notifier = CompletionNotifier()
    results: list[bool] = []
    waiting = threading.Thread(target=lambda: results.append(notifier.wait("arn", 30, bool)))
    waiting.start()
    while notifier.waiters() == 0:
        time.sleep(0.001)
    notifier.stop()
    waiting.join(timeout=5)
    assert results == [False] and notifier.stopping  # not closed: it runs on
    started = time.monotonic()
    assert notifier.wait("other", 30, bool) is False
    assert time.monotonic() - started < 1
    assert notifier.wait("closed", 30, lambda: True) is True  # a closed one still says so
    assert notifier.waiters() == 0
