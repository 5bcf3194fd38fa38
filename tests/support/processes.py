"""What sandbox tests ask of the host's processes, and of an invocation's outcome."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from treadle.adapters.sandbox import InvocationOutcome


def result(outcome: InvocationOutcome) -> Any:
    """The handler's return value; fails with its error (and last log lines) otherwise."""
    assert outcome.error is None, (outcome.error, outcome.logs[-5:])
    assert outcome.payload is not None
    return json.loads(outcome.payload)


def alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits for its parent to collect it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.02)
    return False
