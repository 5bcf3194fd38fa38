"""`benchmarks.threads`: threads read from /proc, named from py-spy's dump, grouped."""

from __future__ import annotations

import os
import threading

from benchmarks import procfs
from benchmarks.threads import by_group, thread_names

DUMP = """Process 4242: python -m treadle.cli dev
Python v3.11.7 (/usr/bin/python3.11)

Thread 4242 (idle): "MainThread"
    select (selectors.py:468)
Thread 4250 (active): "invoke_0"
    poll (handle.py:120)
Thread 4251 (idle): "invoke_11"
    wait (threading.py:320)
Thread 0x7F00AA (idle): "scheduler"
    wait (threading.py:324)
"""


def test_pool_threads_are_grouped_under_their_pool_s_name() -> None:
    assert thread_names(DUMP) == {
        4242: "MainThread",
        4250: "invoke",
        4251: "invoke",
        0x7F00AA: "scheduler",
    }


def test_a_group_counts_what_its_threads_used_between_two_readings() -> None:
    before = {1: procfs.TaskStats(10, 1, 100), 2: procfs.TaskStats(5, 0, 50)}
    after = {
        1: procfs.TaskStats(30, 4, 160),
        2: procfs.TaskStats(9, 1, 70),
        3: procfs.TaskStats(7, 2, 10),  # born in between: counted from zero
    }
    groups = by_group(before, after, {1: "invoke", 2: "invoke", 3: "http"})
    assert (groups["invoke"].threads, groups["invoke"].ticks) == (2, 80)
    assert (groups["invoke"].voluntary, groups["invoke"].involuntary) == (24, 4)
    assert (groups["http"].threads, groups["http"].ticks, groups["http"].voluntary) == (1, 10, 7)


def test_this_process_s_threads_are_read_from_proc_and_blocking_counts() -> None:
    blocked, finish = threading.Event(), threading.Event()
    tid: list[int] = []

    def blocker() -> None:
        tid.append(threading.get_native_id())
        threading.Event().wait(0.005)  # blocks: a voluntary switch
        blocked.set()
        finish.wait()

    thread = threading.Thread(target=blocker)
    thread.start()
    blocked.wait()
    mid = procfs.tasks(os.getpid())
    finish.set()
    thread.join()
    assert threading.get_native_id() in mid and tid[0] in mid
    assert mid[tid[0]].voluntary >= 1
    user, system = procfs.user_system_s(os.getpid())
    assert user + system > 0
