"""Results: per-workload medians, the Rich table, and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.spec import Metric, Workload, median


@dataclass
class WorkloadResult:
    workload: Workload
    title: str
    runs_requested: int
    status: str = "ok"  # ok | timeout | error | skipped
    runs: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    profile: str | None = None
    partial: dict[str, float] | None = None  # figures of a run that timed out
    load: dict[str, float] = field(default_factory=dict)  # cores used, by whom

    def value(self, metric: Metric) -> float | None:
        values = [r[metric.key] for r in self.runs if not math.isnan(r.get(metric.key, math.nan))]
        return median(values) if values else None

    def partial_value(self, metric: Metric) -> float | None:
        """Only when no run completed: a timed-out run's figure beats no figure."""
        if self.runs or not self.partial:
            return None
        return _finite(self.partial.get(metric.key))

    def as_dict(self) -> dict[str, Any]:
        metrics = {}
        for m in self.workload.metrics:
            v = self.value(m)
            metrics[m.key] = {
                "label": m.label,
                "unit": m.unit,
                "target": m.target_text() or None,
                "median": v,
                "meets_target": None if v is None else m.meets(v),
                "from_timed_out_run": self.partial_value(m),
                "runs": [_finite(r.get(m.key)) for r in self.runs],
            }
        return {
            "title": self.title,
            "status": self.status,
            "runs_requested": self.runs_requested,
            "runs_completed": len(self.runs),
            "elapsed_s": round(self.elapsed_s, 2),
            "error": self.error,
            "notes": self.notes,
            "profile": self.profile,
            "load_cores": self.load,
            "metrics": metrics,
        }


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def _fmt(value: float, unit: str) -> str:
    magnitude = abs(value)
    if magnitude >= 100 or unit in ("", "/s"):
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}" if magnitude >= 1 or value == 0 else f"{value:.3f}"
    return f"{text} {unit}".strip()


def _spread(result: WorkloadResult, metric: Metric) -> str:
    values = [r[metric.key] for r in result.runs if not math.isnan(r.get(metric.key, math.nan))]
    if len(values) < 2:
        return ""
    return f"{_fmt(min(values), '')} .. {_fmt(max(values), '')}"


def table(results: list[WorkloadResult], elapsed_s: float) -> Table:
    t = Table(title=f"Treadle benchmarks (medians; total {elapsed_s:.0f} s)", show_lines=False)
    for name, justify in (
        ("id", "left"),
        ("metric", "left"),
        ("measured", "right"),
        ("target", "right"),
        ("", "center"),
        ("runs min .. max", "right"),
    ):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for res in results:
        runs = f"{len(res.runs)}/{res.runs_requested} runs"
        t.add_row(
            f"[bold]{res.workload.id}[/]", f"[bold]{res.title}[/] ({runs})", end_section=False
        )
        for m in res.workload.metrics:
            v = res.value(m)
            p = res.partial_value(m)
            if v is None and p is not None:
                shown, verdict = f"{_fmt(p, m.unit)}*", ""
            elif v is None:
                missing = "n/a" if res.status in ("ok", "partial") else res.status
                shown, verdict = f"[red]{missing}[/]", ""
            else:
                shown = _fmt(v, m.unit)
                ok = m.meets(v)
                verdict = "" if ok is None else ("[green]✓[/]" if ok else "[red]✗[/]")
            t.add_row("", m.label, shown, m.target_text(), verdict, _spread(res, m))
        for note in res.notes + ([f"error: {res.error}"] if res.error else []):
            t.add_row("", f"[yellow]{note}[/]", "", "", "", "")
        t.add_section()
    return t


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except OSError:
        return ""


def meta(options: dict[str, Any], started: float) -> dict[str, Any]:
    try:
        sdk = metadata.version("aws-durable-execution-sdk-python")
    except metadata.PackageNotFoundError:
        sdk = None
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), "")
    except OSError:
        pass
    return {
        "started_at": started,
        "elapsed_s": None,  # filled in at the end
        "options": options,
        "host": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        # Others edit the tree while benchmarks run: say exactly what was measured.
        "git": {
            "commit": _git("rev-parse", "HEAD"),
            "changed": _git("status", "--porcelain").splitlines(),
        },
        "sdk_version": sdk,
    }


def write_json(path: Path, meta_info: dict[str, Any], results: list[WorkloadResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta_info, "workloads": {r.workload.id: r.as_dict() for r in results}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n")
    os.replace(tmp, path)


def print_table(results: list[WorkloadResult], elapsed_s: float) -> None:
    Console(width=max(120, Console().width)).print(table(results, elapsed_s))
