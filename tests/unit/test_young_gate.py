"""The gate on young invocations (`adapters/local/gate.py`): at most `limit` at work at
once while young; one past its youth stops counting, so it never holds the others back."""

from __future__ import annotations

import contextlib
import threading
import time

from treadle.adapters.local.gate import YoungGate

Log = list[tuple[str, str, float]]


def _hold(gate: YoungGate, release: threading.Event, log: Log, name: str) -> threading.Thread:
    def run() -> None:
        ticket = gate.enter()
        log.append((name, "in", time.monotonic()))
        release.wait(10)
        log.append((name, "out", time.monotonic()))
        gate.leave(ticket)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_no_more_than_the_limit_are_young_at_once_and_a_leaver_lets_the_next_in() -> None:
    gate = YoungGate(2, young_s=30)
    log: Log = []
    first, rest = threading.Event(), threading.Event()
    a = _hold(gate, first, log, "a")
    b = _hold(gate, rest, log, "b")
    time.sleep(0.1)
    c = _hold(gate, rest, log, "c")
    time.sleep(0.2)
    assert sorted(n for n, what, _ in log if what == "in") == ["a", "b"]  # c waits
    first.set()
    a.join(5)
    deadline = time.monotonic() + 5
    while not any(n == "c" for n, _, _ in log) and time.monotonic() < deadline:
        time.sleep(0.01)
    rest.set()
    b.join(5)
    c.join(5)
    a_out = next(t for n, what, t in log if (n, what) == ("a", "out"))
    c_in = next(t for n, what, t in log if (n, what) == ("c", "in"))
    assert c_in >= a_out


def test_a_holder_past_its_youth_stops_counting_and_the_next_gets_in_beside_it() -> None:
    gate = YoungGate(1, young_s=0.05)
    log: Log = []
    long_handler = threading.Event()
    a = _hold(gate, long_handler, log, "a")
    time.sleep(0.01)
    asked = time.monotonic()
    ticket = gate.enter()  # waits for a's youth to end, not for a
    waited = time.monotonic() - asked
    gate.leave(ticket)
    assert [what for n, what, _ in log if n == "a"] == ["in"]  # a still runs
    assert waited < 1.0
    long_handler.set()
    a.join(5)


def test_a_holder_leaving_after_its_youth_frees_no_place_a_younger_one_holds() -> None:
    gate = YoungGate(1, young_s=1.0)
    old = gate.enter()
    time.sleep(1.05)
    asked = time.monotonic()
    young = gate.enter()  # the old one stopped counting
    assert time.monotonic() - asked < 0.5
    gate.leave(old)  # counted no more: this must not let a second one in beside `young`
    log: Log = []
    release = threading.Event()
    c = _hold(gate, release, log, "c")
    time.sleep(0.2)
    assert log == []
    gate.leave(young)
    deadline = time.monotonic() + 5
    while not log and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [what for _, what, _ in log] == ["in"]
    release.set()
    c.join(5)


def test_run_leaves_the_gate_when_the_work_fails() -> None:
    gate = YoungGate(1, young_s=30)

    def boom() -> None:
        raise ValueError("handler failed")

    for _ in range(3):  # each failure left its place: the next one gets in at once
        with contextlib.suppress(ValueError):
            gate.run(boom)
    done: list[int] = []
    worker = threading.Thread(target=lambda: gate.run(lambda: done.append(1)))
    worker.start()
    worker.join(2)
    assert done == [1]
