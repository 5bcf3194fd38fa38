"""The failpoint hook: off by default, exact about which boundary it crashes at."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from treadle import failpoints
from treadle.failpoints import CRASH_EXIT_CODE, Kind, resolve
from treadle.settings import ENV_FAILPOINT


class Exited(Exception):
    pass


def _exit(code: int) -> None:
    raise Exited(code)


def test_an_unset_failpoint_is_a_function_that_does_nothing() -> None:
    hook = resolve(None)
    assert hook is resolve("")
    assert hook(Kind.COMMIT, "before") is None


def test_a_crash_happens_at_the_nth_boundary_of_its_kind_and_position_only() -> None:
    hook = resolve("commit:after:3", exit=_exit)
    for _ in range(5):
        hook(Kind.COMMIT, "before")
        hook(Kind.REF, "after")
    hook(Kind.COMMIT, "after")
    hook(Kind.COMMIT, "after")
    with pytest.raises(Exited) as exc:
        hook(Kind.COMMIT, "after")
    assert exc.value.args == (CRASH_EXIT_CODE,)


def test_any_counts_every_kind_in_the_order_they_come() -> None:
    hook = resolve("any:before:3", exit=_exit)
    hook(Kind.TIMER, "before")
    hook(Kind.FACET, "after")
    hook(Kind.REF, "before")
    with pytest.raises(Exited):
        hook(Kind.COMMIT, "before")


def test_counting_mode_writes_the_counts_as_it_goes(tmp_path: Path) -> None:
    out = tmp_path / "counts.json"
    hook = resolve(f"count:{out}")
    assert json.loads(out.read_text()) == {}
    hook(Kind.COMMIT, "before")
    hook(Kind.COMMIT, "after")
    hook(Kind.TIMER, "before")
    assert json.loads(out.read_text()) == {"commit:after": 1, "commit:before": 1, "timer:before": 1}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("disk:before:1", "the kind must be one of commit, ref, facet, timer, any, count"),
        ("commit:during:1", "the position must be before or after"),
        ("commit:before:0", "the count must be a whole number >= 1"),
        ("commit:before:x", "the count must be a whole number >= 1"),
        ("count:", "needs a file"),
    ],
)
def test_a_bad_failpoint_is_refused_with_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as exc:
        resolve(spec)
    assert ENV_FAILPOINT in str(exc.value)


def test_the_process_exits_at_once_at_the_failpoint_and_hides_it_from_children(
    tmp_path: Path,
) -> None:
    script = (
        "import os, sys\n"
        "from treadle.failpoints import Kind, boundary\n"
        f"assert {ENV_FAILPOINT!r} not in os.environ\n"
        "boundary(Kind.REF, 'before')\n"
        "print('first', flush=True)\n"
        "boundary(Kind.REF, 'before')\n"
        "print('never')\n"
    )
    env = {**os.environ, ENV_FAILPOINT: "ref:before:2"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr
    assert proc.stdout == "first\n"


def test_this_process_runs_with_the_hook_off() -> None:
    assert failpoints.boundary.__name__ == "_off"
