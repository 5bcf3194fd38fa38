"""Root fixtures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Tests import helpers as `support.*`, and the checkout's own packages (`tools`, `infra`)
# even when pytest is not started from the repository root.
sys.path.insert(0, str(Path(__file__).parent))
if str(Path(__file__).parent.parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent.parent))

from support import moto_serial

# moto's DynamoDB with DynamoDB's own write isolation (support/moto_serial.py).
moto_serial.install()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The crash-at-every-boundary tally (tests/integration/test_commit_boundaries.py),
    from the reports' properties: they reach this process from xdist workers too."""
    totals = {"boundaries": 0, "boundary_points": 0, "boundary_crashes": 0}
    for report in terminalreporter.stats.get("passed", []):
        for key, value in getattr(report, "user_properties", []):
            if key in totals:
                totals[key] += int(value)
    if totals["boundary_points"]:
        terminalreporter.write_sep(
            "-",
            f"crash at every commit boundary: {totals['boundaries']} boundaries, "
            f"{totals['boundary_points']} crash points (before and after each) run, "
            f"{totals['boundary_crashes']} crashes survived",
        )
