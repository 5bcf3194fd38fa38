"""What a workload is, what it measures, and what a run of it gets to work with."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from benchmarks.lean import ARN_HEADER, LeanInvoker
from benchmarks.server import REGION, BenchServer, client, credentials


class WorkloadTimeout(Exception):
    """A workload ran past its time budget; reported as "timeout", never as a number."""


@dataclass(frozen=True)
class Deadline:
    end: float  # time.monotonic()

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def passed(self) -> bool:
        return time.monotonic() > self.end

    def check(self, what: str) -> None:
        if self.passed():
            raise WorkloadTimeout(what)

    def sleep(self, seconds: float, what: str) -> None:
        self.check(what)
        time.sleep(max(0.0, min(seconds, self.remaining())))


@dataclass
class Options:
    runs: int = 3
    w2_count: int = 1_000
    w2b_count: int = 5_000
    w3_count: int = 2_000
    w4_count: int = 5_000
    w4_lead_s: float | None = None  # None: derived from the count
    w4_runs: int = 1
    repos_count: int = 10_000
    client_threads: int = 4
    time_scale: float = 1.0  # multiplies every workload's time budget
    keep_data: bool = False
    processes: int = 1  # `treadle dev --processes`: server processes on the data directory
    client: str = "lean"  # the start workloads' Invoke client: "lean" or "boto3" (`lean.py`)


@dataclass
class Env:
    """What a workload run gets: the server (None for in-process workloads) and options.

    `partial` holds figures a run has already established (starts issued, peak memory):
    when the run times out they are reported instead of nothing.
    """

    server: BenchServer | None
    options: Options
    deadline: Deadline
    notes: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # what setup() leaves for the runs
    partial: dict[str, float] = field(default_factory=dict)
    _clients: list[Any] = field(default_factory=list)
    _lean: list[LeanInvoker] = field(default_factory=list)

    @property
    def srv(self) -> BenchServer:
        assert self.server is not None, "this workload needs a server"
        return self.server

    def clients(self, n: int) -> list[Any]:
        """`n` boto3 clients, made once and reused: creating one costs ~50 ms of CPU."""
        while len(self._clients) < n:
            self._clients.append(client(self.srv))
        return self._clients[:n]

    def starters(self, n: int) -> list[Callable[[str, bytes], str]]:
        """`n` ways to start an execution by asynchronous Invoke (function, payload) ->
        its ARN, one per client thread: `lean.py`'s, or boto3's with `--client boto3`."""
        if self.options.client == "boto3":
            return [partial(_boto3_start, lam) for lam in self.clients(n)]
        return [lean.start for lean in self.lean(n)]

    def lean(self, n: int) -> list[LeanInvoker]:
        """`n` lean clients (`lean.py`), made once and reused."""
        while len(self._lean) < n:
            key_id, secret = credentials(self.srv)
            self._lean.append(LeanInvoker(self.srv.url, key_id, secret, REGION))
        return self._lean[:n]

    @property
    def lam(self) -> Any:
        return self.clients(1)[0]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    target: float | None = None  # None: reported for context, not judged
    higher_is_better: bool = False
    strict: bool = False  # target is "<" rather than "<="

    def meets(self, value: float) -> bool | None:
        if self.target is None or value != value:  # NaN: nothing to judge
            return None
        if self.higher_is_better:
            return value >= self.target
        return value < self.target if self.strict else value <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return ""
        op = ">=" if self.higher_is_better else ("<" if self.strict else "<=")
        return f"{op} {self.target:g} {self.unit}".strip()


def _configured_runs(options: Options) -> int:
    return options.runs


@dataclass(frozen=True)
class Workload:
    id: str
    title: str  # may name Options fields: "{w3_count} executions ..."
    metrics: tuple[Metric, ...]
    run: Callable[[Env], dict[str, float]]  # one run; returns metric key -> value
    # Seconds for setup and all runs together, before Options.time_scale. The defaults
    # add up to about six minutes: a platform far off its targets times out instead.
    budget_s: Callable[[Options], float]
    setup: Callable[[Env], None] | None = None
    runs: Callable[[Options], int] = _configured_runs
    needs_server: bool = True


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def _boto3_start(lam: Any, function: str, body: bytes) -> str:
    resp = lam.invoke(FunctionName=function, InvocationType="Event", Payload=body)
    return str(resp["ResponseMetadata"]["HTTPHeaders"][ARN_HEADER])
