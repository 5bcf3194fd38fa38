"""`--profile ID`: py-spy attached to the server (and its sandbox processes) for one workload.

py-spy samples from outside the process, so the server needs no change; it is
installed with `pip install py-spy`. Sampling costs CPU on the same cores, so the
figures of a profiled workload are perturbed: use them for where, not how much.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

FORMATS = {"svg": ("flamegraph", "svg"), "speedscope": ("speedscope", "speedscope.json")}
# cpu: only threads holding the GIL, i.e. where the CPU goes (the usual question on a
# 2-core box where the workloads are CPU-bound). wall: every thread, waiting included,
# for latency questions (what a request waits on).
MODES = {"cpu": ["--gil"], "wall": ["--idle"]}


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def command(
    exe: str, pid: int, output: Path, fmt: str, mode: str = "cpu", rate: int = 100
) -> list[str]:
    py_format, _ = FORMATS[fmt]
    # --subprocesses follows the zygote and its workers; --nonblocking does not pause the
    # server at each sample, which keeps the perturbation down. 100 Hz: with a hundred
    # processes py-spy falls behind at higher rates on two cores.
    return [
        exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", *MODES[mode],
        "--rate", str(rate), "--format", py_format, "--output", str(output),
    ]  # fmt: skip


class Profiler:
    def __init__(self, pid: int, workload_id: str, out_dir: Path, fmt: str, mode: str) -> None:
        self.pid = pid
        _, ext = FORMATS[fmt]
        self.output = out_dir / f"profile-{workload_id}-{mode}.{ext}"
        self.fmt = fmt
        self.mode = mode
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = out_dir / f"profile-{workload_id}-{mode}.log"
        self.problem: str | None = None

    def start(self) -> None:
        exe = py_spy()
        if exe is None:
            self.problem = "py-spy is not installed (pip install py-spy): not profiled"
            return
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command(exe, self.pid, self.output, self.fmt, self.mode), stdout=log, stderr=log
            )

    def stop(self) -> None:
        """SIGINT makes py-spy stop sampling and write its file."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not self.output.exists():
            self.problem = f"py-spy wrote no profile; see {self.log}"
        self.proc = None
