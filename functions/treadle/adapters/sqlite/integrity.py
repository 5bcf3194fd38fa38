"""The SQLite half of the start-up check (`platform/integrity.py`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def quick_check(path: Path) -> str | None:
    """What is wrong with the SQLite file at `path`, None if nothing."""
    try:
        # mode=rw: a missing file is an error, never a new empty database.
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=30)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"SQLite cannot read it ({exc})"
    # One row per problem, or one row of many lines (as SQLite's own shell prints them).
    lines = [line for row in rows for line in str(row[0]).splitlines()]
    problems = [line for line in lines if line and not line.startswith("***")]
    if problems == ["ok"]:
        return None
    more = f" (and {len(problems) - 3} more problems)" if len(problems) > 3 else ""
    return "PRAGMA quick_check found: " + "; ".join(problems[:3]) + more
