"""Root fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# Tests import helpers as `support.*`, and the checkout's own packages (`tools`, `infra`)
# even when pytest is not started from the repository root.
sys.path.insert(0, str(Path(__file__).parent))
if str(Path(__file__).parent.parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent.parent))

from support import moto_serial
from treadle.settings import ENV_PIN_CORES

# Servers the tests start run two at a time (two xdist workers on two cores) beside the
# tests' own processes: each keeping its threads on one core (`treadle/affinity.py`),
# they would often share one, and the suite took 16 minutes instead of 9. Pinning is
# tested where it is the subject: tests/unit/test_affinity.py, tests/integration/
# test_processes.py (which turns it on).
os.environ.setdefault(ENV_PIN_CORES, "false")

# moto's DynamoDB with DynamoDB's own write isolation (support/moto_serial.py).
moto_serial.install()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The crash-at-every-boundary tally (tests/integration/test_commit_boundaries.py),
    from the reports' properties: they reach this process from xdist workers too. Keys
    `<name>@<backend>` are another backend's (the embedded one has no suffix)."""
    totals: dict[str, dict[str, int]] = {}
    names = ("boundaries", "boundary_points", "boundary_crashes")
    rows: list[str] = []
    for report in terminalreporter.stats.get("passed", []):
        for key, value in getattr(report, "user_properties", []):
            if key == "fault_row":
                rows.append(str(value))
            name, _, backend = str(key).partition("@")
            if name in names:
                per = totals.setdefault(backend, dict.fromkeys(names, 0))
                per[name] += int(value)
    for backend, per in sorted(totals.items()):
        if not per["boundary_points"]:
            continue
        on = f" ({backend} backend)" if backend else ""
        terminalreporter.write_sep(
            "-",
            f"crash at every commit boundary{on}: {per['boundaries']} boundaries, "
            f"{per['boundary_points']} crash points (before and after each) run, "
            f"{per['boundary_crashes']} crashes survived",
        )
    if rows:
        # The AWS fault matrix (tests/integration/test_aws_faults.py), rows that passed.
        terminalreporter.write_sep("-", f"AWS fault matrix: {len(rows)} rows passed")
        terminalreporter.write_line("fault | injected | redelivered | pushes refused")
        for row in sorted(rows):
            terminalreporter.write_line(row.replace("|", " | "))
