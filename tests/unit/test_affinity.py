"""`treadle.affinity`: a server process keeps its threads on one core, and tells what it
starts which cores it had. Run in a child interpreter: pinning this test process would
slow the rest of the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from treadle.settings import ENV_CPUS

CORES = sorted(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(CORES) < 2, reason="one core: nothing to pin")


def _run(script: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


PROBE = """
    import json, os, threading
    from treadle import affinity

    before = threading.Thread(target=threading.Event().wait, daemon=True)
    before.start()
    core = affinity.pin(INDEX)
    after = threading.Thread(target=threading.Event().wait, daemon=True)
    after.start()
    masks = [sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")]
    children = affinity.children_cores()
    affinity.unpin()
    restored = [sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")]
    print(json.dumps({"core": core, "masks": masks, "children": children, "restored": restored}))
"""


@needs_two
def test_every_thread_running_and_to_come_is_put_on_the_index_th_core() -> None:
    got = _run(PROBE.replace("INDEX", "1"))
    order = [int(c) for c in str(got["children"]).split(",")]
    assert sorted(order) == CORES  # every core, in the order processes take them
    assert got["core"] == order[1]
    assert got["masks"] == [[order[1]]] * 3  # the main thread, one before, one after
    assert got["restored"] == [CORES] * 3


@needs_two
def test_the_index_wraps_around_the_cores() -> None:
    got = _run(PROBE.replace("INDEX", str(len(CORES))))
    assert got["core"] == int(str(got["children"]).split(",")[0])


@needs_two
def test_the_first_process_takes_the_core_it_runs_on() -> None:
    got = _run(
        """
        import json
        from treadle import affinity

        for _ in range(50):  # a migration between the two reads: read again
            now = affinity._current_core()
            order = affinity.core_order()
            if affinity._current_core() == now:
                break
        print(json.dumps({"now": now, "order": list(order)}))
        """
    )
    assert got["order"][0] == got["now"]  # type: ignore[index]


@needs_two
def test_a_process_started_by_a_pinned_one_takes_its_own_core_from_what_it_was_passed() -> None:
    # Started from a thread on one core, it inherits that core; the variable says more.
    passed = list(reversed(CORES))
    got = _run(
        f"import os; os.sched_setaffinity(0, {{{CORES[0]}}})\n"
        + textwrap.dedent(PROBE).replace("INDEX", "1"),
        env={ENV_CPUS: ",".join(map(str, passed))},
    )
    assert got["core"] == passed[1]
    assert got["children"] == ",".join(map(str, passed))  # passed on as it came


def test_one_core_pins_nothing_and_a_bad_variable_is_ignored() -> None:
    script = f"import os; os.sched_setaffinity(0, {{{CORES[0]}}})\n" + textwrap.dedent(PROBE)
    got = _run(script.replace("INDEX", "0"), env={ENV_CPUS: "not,cores"})
    assert got["core"] is None
    assert got["children"] == ""
