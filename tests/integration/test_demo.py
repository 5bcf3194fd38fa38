"""The README's main job, `make demo`, keeps working: run its module end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("backend", ["embedded", "aws"])
def test_demo_runs_every_example_to_success(backend: str) -> None:
    # aws: DynamoDB, S3, SQS and Lambda's control plane on a moto server the demo starts.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["TREADLE_BACKEND"] = backend
    proc = subprocess.run(
        [sys.executable, "-m", "tools.demo"],
        cwd=Path(__file__).resolve().parent.parent.parent,  # `make demo` runs from the root
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "deployed greeter" in out and "deployed order_workflow" in out
    assert "greeter says: Hello, Treadle!" in out
    assert "order workflow: SUCCEEDED" in out
    assert '"approved_by": "demo-manager"' in out
    if backend == "aws":
        assert "AWS backend" in out and "DynamoDB" in out
