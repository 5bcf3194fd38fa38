"""The README's main job, `make demo`, keeps working: run its module end to end."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_every_example_to_success() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "treadle.demo"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "deployed greeter" in out and "deployed order_workflow" in out
    assert "greeter says: Hello, Treadle!" in out
    assert "order workflow: SUCCEEDED" in out
    assert '"approved_by": "demo-manager"' in out
