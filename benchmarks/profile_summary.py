"""Where a profiled workload's CPU went, as text: self and inclusive time per function.

`--profile ID --profile-format speedscope` writes a py-spy speedscope file (every
thread of the server and, with `--subprocesses`, of the zygote and the sandbox
workers). A flame graph shows the shape; this prints the numbers that say what stands
in the way, split between the server process and its sandbox processes:

    .venv/bin/python -m benchmarks.profile_summary benchmarks/results/profile-W2-cpu.speedscope.json
    .venv/bin/python -m benchmarks.profile_summary FILE --per 1000 --top 30

`--per N` divides every figure by N (e.g. the workload's executions) and prints
milliseconds per unit instead of seconds in total. With py-spy's `--gil` (mode cpu),
the times are of threads holding the GIL: Python work, not waits.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

# What names a server process in py-spy's frames: `treadle dev`, or the in-process
# platform of `benchmarks.engine`.
SERVER_MARKS = ("treadle.cli", "benchmarks.engine")
# Frames every sample shares: the process, the thread's bootstrap, the pool's loop.
_PLUMBING = ("process ", "Thread._bootstrap", "Thread.run", "_worker", "_WorkItem.run")


def _name(frame: dict[str, Any]) -> str:
    file = str(frame.get("file") or "").rsplit("/", 1)[-1]
    return f"{frame['name']} ({file})" if file else str(frame["name"])


def _is_process(frame: dict[str, Any]) -> bool:
    return str(frame["name"]).startswith("process ")


def summarise(doc: dict[str, Any]) -> dict[str, dict[str, Counter[str]]]:
    """{"server"|"sandbox": {"total"|"self"|"inclusive": Counter}} in seconds."""
    frames = doc["shared"]["frames"]
    out: dict[str, dict[str, Counter[str]]] = {
        side: {"total": Counter(), "self": Counter(), "inclusive": Counter()}
        for side in ("server", "sandbox")
    }
    for profile in doc["profiles"]:
        samples = [s for s in profile["samples"] if s]
        if not samples:
            continue
        # With --subprocesses a child's stacks start with its ancestors' process frames:
        # the innermost process frame names the process.
        owner = [str(frames[i]["name"]) for i in samples[0] if _is_process(frames[i])][-1:]
        side = "server" if owner and any(m in owner[0] for m in SERVER_MARKS) else "sandbox"
        unit = 1.0 if profile.get("unit") == "seconds" else 1e-3
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            seconds = weight * unit
            out[side]["total"]["all"] += seconds
            out[side]["self"][_name(frames[stack[-1]])] += seconds
            for name in {_name(frames[i]) for i in stack if not _is_process(frames[i])}:
                out[side]["inclusive"][name] += seconds
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="a speedscope JSON file written by py-spy")
    parser.add_argument("--per", type=float, default=None, help="divide by this many units")
    parser.add_argument("--top", type=int, default=20, help="rows per table")
    args = parser.parse_args(argv)
    summary = summarise(json.loads(args.profile.read_text()))
    scale, unit = (1000 / args.per, "ms/unit") if args.per else (1.0, "s")
    for side, tables in summary.items():
        total = tables["total"]["all"]
        print(f"== {side}: {total * scale:.3f} {unit} sampled")
        for kind in ("self", "inclusive"):
            print(f"-- {kind}")
            rows = [
                (name, seconds)
                for name, seconds in tables[kind].most_common()
                if not (kind == "inclusive" and name.startswith(_PLUMBING))
            ]
            for name, seconds in rows[: args.top]:
                print(f"{seconds * scale:9.3f}  {100 * seconds / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
