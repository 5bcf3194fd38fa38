"""The machine's floor (`benchmarks.floor`, `benchmarks.sdk_floor`): the figures come
from work that was done (the SDK's steps checkpointed, bytes echoed by another
process), not from an empty loop."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks import floor


def test_the_sdk_floor_runs_every_step_through_its_checkpoints() -> None:
    command = [sys.executable, "-m", "benchmarks.sdk_floor", "--json", "--count", "40"]
    command += ["--rounds", "1"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    # The SDK checkpoints each step once (START and SUCCEED in one call, as a worker
    # runs it): 21 calls for 21 steps against the instant client.
    assert figures["checkpoints_per_21_steps"] == 21
    assert figures["sdk_invocation_us"] > 0
    assert figures["sdk_step_us"] > 0


def test_the_floor_keeps_only_its_two_sdk_figures() -> None:
    figures = floor.sdk_us(count=20)
    assert set(figures) == {"sdk_invocation_us", "sdk_step_us"}
    assert all(value > 0 for value in figures.values())


def test_a_round_trip_is_echoed_by_another_process() -> None:
    # The parent reads back every byte it sent: a child that did not echo would block
    # it, and the figures count both processes' CPU.
    wall, cpu = floor.round_trip_us(n=50)
    assert wall > 0 and cpu > 0
