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
    assert '{"t":' not in out  # payloads are shown decoded, not in the SDK's envelope
    # The agent: its memory in a facet, its report committed to its session's repository.
    assert "remembers 3 notes, committed" in out and "facet agent-s" in out
    assert "report of session s" in out
    assert "What next" in out


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    # A leftover endpoint from the README's previous step: nothing answers there.
    env = {**os.environ, "TREADLE_BACKEND": "aws", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    env["TREADLE_TABLE"] = "no table here!"  # an invalid setting the server refuses
    proc = subprocess.run(
        [sys.executable, "-m", "tools.demo"],
        cwd=Path(__file__).resolve().parent.parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "treadle dev said" in out and "TREADLE_TABLE" in out, out[-3000:]
    assert "did not start" in out
