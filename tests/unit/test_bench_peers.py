"""`make bench-peers`' table: the best peer per workload and a ratio where > 1 is ahead."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.peers import table

HARNESS = Path("/nonexistent-harness")  # no summarize.py: peers named by their "peer" field


def _write(out: Path, peers: list[dict[str, object]], ours: dict[str, dict[str, float]]) -> None:
    (out / "peers.jsonl").write_text("".join(json.dumps(p) + "\n" for p in peers))
    workloads = {
        wid: {"metrics": {k: {"median": v} for k, v in metrics.items()}}
        for wid, metrics in ours.items()
    }
    (out / "treadle.json").write_text(json.dumps({"workloads": workloads}))


def _row(lines: list[str], label: str) -> list[str]:
    found = [line for line in lines if line.startswith(f"| {label}")]
    assert len(found) == 1, lines
    return [c.strip() for c in found[0].strip("|").split("|")]


def test_the_best_peer_is_the_fastest_and_the_ratio_says_how_far_ahead(tmp_path: Path) -> None:
    _write(
        tmp_path,
        [
            {"peer": "slow", "w1_per_step_ms": 4.0, "w2_completed_per_s": 100.0},
            {"peer": "fast", "w1_per_step_ms": 2.0, "w2_completed_per_s": 400.0},
            {"peer": "fast", "w1_per_step_ms": 3.0, "w2_completed_per_s": 200.0},
            {"peer": "floor", "w1_per_step_ms": 0.001},  # the machine, not a peer
        ],
        {"W1": {"ms_per_step": 1.0}, "W2": {"completed_per_s": 150.0}},
    )
    _, lines = table(tmp_path, HARNESS, [])
    w1 = _row(lines, "W1 ms/step")
    # fast's median is 2.5 ms: better than slow's 4; lower is better, so 2.5 / 1.0.
    assert w1[2:] == ["fast", "2.50 ms", "2.50x"]
    w2 = _row(lines, "W2 completed/s")
    # fast's median 300/s; higher is better, so 150 / 300: behind.
    assert w2[2:] == ["fast", "300.00 /s", "0.50x"]


def test_a_workload_nobody_measured_shows_a_dash(tmp_path: Path) -> None:
    _write(tmp_path, [{"peer": "p", "w1_per_step_ms": 2.0}], {})
    _, lines = table(tmp_path, HARNESS, ["a note"])
    assert _row(lines, "W1 ms/step")[1] == "—"
    assert _row(lines, "W1 ms/step")[4] == "—"
    assert _row(lines, "W3s first start -> all done")[2] == "—"
    assert lines[-1].strip() == "a note"
