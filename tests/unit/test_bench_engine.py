"""`python -m benchmarks.engine` runs: the played worker's executions all close, and
the figures it prints come from them (CPU, SQL, the WAL's pages by b-tree)."""

from __future__ import annotations

import re

import pytest
from benchmarks import engine


def test_it_runs_executions_and_prints_their_cost(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--count", "40", "--rounds", "1", "--warm-up", "5", "--all-cores"]
    assert engine.main([*argv, "--sql", "--pages"]) == 0
    out = capsys.readouterr().out
    cpu = re.search(r"best ([0-9.]+) ms CPU per execution", out)
    assert cpu is not None and float(cpu.group(1)) > 0
    assert engine.PlayedPlatform.played.calls >= 40 + 5 + 40 + 50  # rounds, warm-up, sql, pages
    pages = re.search(r"WAL: ([0-9.]+) pages per execution", out)
    assert pages is not None and float(pages.group(1)) > 1
    # The b-trees every one-step execution writes are named, the executions table first.
    assert re.search(r"^\s+[0-9.]+\s+executions$", out, re.MULTILINE)
    assert re.search(r"COMMIT", out)


def test_wal_frames_reads_the_frames_of_the_current_salt_only() -> None:
    page = 512
    header = b"\x37\x7f\x06\x82" + (3007000).to_bytes(4, "big") + page.to_bytes(4, "big")
    header += bytes(4) + b"SALTSALT" + bytes(8)

    def frame(number: int, commit: int, salt: bytes) -> bytes:
        return number.to_bytes(4, "big") + commit.to_bytes(4, "big") + salt + bytes(8 + page)

    wal = header + frame(7, 0, b"SALTSALT") + frame(9, 10, b"SALTSALT") + frame(3, 1, b"OLDSALT!")
    assert engine.wal_frames(wal) == [(7, False), (9, True)]
    assert engine.wal_frames(b"") == []


def test_with_a_wait_each_execution_parks_and_is_resumed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    played = engine.PlayedPlatform.played
    before = played.calls
    argv = ["--count", "20", "--rounds", "1", "--warm-up", "2", "--all-cores", "--wait"]
    try:
        assert engine.main(argv) == 0
    finally:
        played.wait_s = None
    # Two invocations per execution: the one that parks, the one its wait's end resumes.
    assert played.calls - before == 2 * (20 + 2)
    assert "ms CPU per execution" in capsys.readouterr().out


def test_without_py_spy_the_profile_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine.profiling, "py_spy", lambda: None)
    argv = ["--count", "5", "--rounds", "1", "--warm-up", "1", "--all-cores", "--profile", "3"]
    assert engine.main(argv) == 0
    assert "py-spy is not installed" in capsys.readouterr().out
