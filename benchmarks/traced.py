"""`treadle dev` with `tracemalloc` on, for the soak's `--tracemalloc`.

    python -m benchmarks.traced dev --data-dir D   # the arguments of `treadle`

SIGUSR1 writes a snapshot of the server process's Python allocations to
`$TREADLE_BENCH_SNAPSHOTS/<n>.snapshot` (n counts from 0); the soak (`snapshot`,
`growth` below) compares the one taken after warm-up with the last, to tell a cache
filling up from a leak. Benchmarks only: tracing every allocation slows the server.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

from rich.table import Table

ENV_SNAPSHOTS = "TREADLE_BENCH_SNAPSHOTS"
FRAMES = 12


def _snapshot_on_signal(directory: Path) -> None:
    taken = 0

    def take(_sig: int, _frame: FrameType | None) -> None:
        nonlocal taken
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (tracemalloc.Filter(False, tracemalloc.__file__),)
        )
        # Written then renamed: the soak reads it as soon as the name appears.
        tmp = directory / f".{taken}.tmp"
        snapshot.dump(str(tmp))
        os.replace(tmp, directory / f"{taken}.snapshot")
        taken += 1

    signal.signal(signal.SIGUSR1, take)


def snapshot(srv: Any, directory: Path, timeout_s: float = 120.0) -> Path:
    """Ask the traced server `srv` (a BenchServer) for a snapshot; its path once written."""
    before = len(list(directory.glob("*.snapshot"))) if directory.exists() else 0
    os.kill(srv.pid, signal.SIGUSR1)
    path = directory / f"{before}.snapshot"
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server wrote no snapshot {path} in {timeout_s:.0f} s")
        time.sleep(0.2)
    return path


def growth(first: Path, last: Path, top: int = 20) -> Table:
    """The allocation sites that grew most between two snapshots (by source line)."""
    old = tracemalloc.Snapshot.load(str(first))
    new = tracemalloc.Snapshot.load(str(last))
    table = Table(title="Server allocations that grew (warm-up -> end), by line")
    for col in ("KiB grown", "blocks grown", "KiB now", "where"):
        table.add_column(col, justify="left" if col == "where" else "right", overflow="fold")
    for stat in new.compare_to(old, "lineno")[:top]:
        frame = stat.traceback[0]
        table.add_row(
            f"{stat.size_diff / 1024:+,.1f}",
            f"{stat.count_diff:+,}",
            f"{stat.size / 1024:,.1f}",
            f"{_short(frame.filename)}:{frame.lineno}",
        )
    total = sum(s.size for s in new.statistics("filename")) - sum(
        s.size for s in old.statistics("filename")
    )
    table.caption = f"traced total grew {total / 2**20:+,.2f} MiB"
    return table


def growth_tracebacks(first: Path, last: Path, top: int = 5) -> str:
    """The few allocation sites that grew most, each with its call stack."""
    old = tracemalloc.Snapshot.load(str(first))
    new = tracemalloc.Snapshot.load(str(last))
    lines = []
    for stat in new.compare_to(old, "traceback")[:top]:
        lines.append(f"{stat.size_diff / 1024:+,.1f} KiB in {stat.count_diff:+,} blocks:")
        for frame in stat.traceback:
            lines.append(f"    {_short(frame.filename)}:{frame.lineno}")
    return "\n".join(lines)


def _short(filename: str) -> str:
    # The table is read in a terminal: the part of the path that names the module.
    for marker in ("site-packages/", "functions/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> int:
    directory = Path(os.environ[ENV_SNAPSHOTS])
    directory.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(FRAMES)
    _snapshot_on_signal(directory)
    from treadle.cli import main as treadle_main

    return treadle_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
