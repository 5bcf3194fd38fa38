"""Durable-execution metrics with AWS's names, per tenant and function, in memory.

Lambda publishes `DurableExecutionStarted/Succeeded/Failed/Stopped/TimedOut`,
`ApproximateRunningDurableExecutions` and `DurableExecutionDuration` per function, and
`Duration`/`Errors`/`Invocations` per invocation. Here they are counters in a dict
(no I/O on the hot path) rendered on demand as Prometheus text, for one tenant or all.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from treadle.domain.notifications import StatusEvent

# Status entered -> the counter Lambda increments for it.
STATUS_COUNTERS: Final = {
    "SUCCEEDED": "DurableExecutionSucceeded",
    "FAILED": "DurableExecutionFailed",
    "STOPPED": "DurableExecutionStopped",
    "TIMED_OUT": "DurableExecutionTimedOut",
}
STARTED: Final = "DurableExecutionStarted"
RUNNING: Final = "ApproximateRunningDurableExecutions"
EXECUTION_DURATION: Final = "DurableExecutionDuration"
INVOCATIONS: Final = "Invocations"
ERRORS: Final = "Errors"
DURATION: Final = "Duration"
COUNTERS: Final = (STARTED, *STATUS_COUNTERS.values(), INVOCATIONS, ERRORS)
_HELP: Final = {
    STARTED: "Durable executions that started",
    "DurableExecutionSucceeded": "Durable executions that succeeded",
    "DurableExecutionFailed": "Durable executions that failed",
    "DurableExecutionStopped": "Durable executions stopped by StopDurableExecution",
    "DurableExecutionTimedOut": "Durable executions that exceeded their execution timeout",
    RUNNING: "Durable executions in the RUNNING status",
    EXECUTION_DURATION: "Wall-clock milliseconds durable executions took, start to close",
    INVOCATIONS: "Function invocations, replays included",
    ERRORS: "Function invocations that ended in a function error",
    DURATION: "Milliseconds each function invocation ran",
}
LABELS: Final = ("tenant", "function")

Key = tuple[str, str]  # (tenant, function name)
V = TypeVar("V")


def function_name(function_arn: str) -> str:
    """`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]` -> NAME."""
    parts = function_arn.split(":")
    return parts[6] if len(parts) > 6 else function_arn


def metric_names(event: StatusEvent) -> list[str]:
    """The counters one status change increments (RUNNING -> RUNNING after a resume: none)."""
    names = []
    if event.previous_status is None and event.status == "RUNNING":
        names.append(STARTED)
    if event.status in STATUS_COUNTERS:
        names.append(STATUS_COUNTERS[event.status])
    return names


class DurableMetrics:
    """The counters, fed by status events and invocations; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[Key, int]] = {name: defaultdict(int) for name in COUNTERS}
        self._running: dict[Key, int] = defaultdict(int)
        # name -> key -> (count, sum in ms): Prometheus summaries without quantiles.
        self._sums: dict[str, dict[Key, tuple[int, float]]] = {
            EXECUTION_DURATION: {},
            DURATION: {},
        }

    def status_changed(self, event: StatusEvent) -> None:
        key = (event.tenant, function_name(event.function_arn))
        with self._lock:
            for name in metric_names(event):
                self._counts[name][key] += 1
            if event.status == "RUNNING" and event.previous_status != "RUNNING":
                self._running[key] += 1
            elif event.previous_status == "RUNNING" and event.status != "RUNNING":
                # Never below zero, whatever order listeners ran in around the seed.
                self._running[key] = max(0, self._running[key] - 1)
            if event.end_ms is not None:
                self._add(EXECUTION_DURATION, key, event.end_ms - event.start_ms)

    def seed_running(self, counts: Mapping[Key, int]) -> None:
        """Executions already RUNNING when this process started (`running_seed`): the
        gauge starts from the stores' count, and status changes move it from there."""
        with self._lock:
            for key, value in counts.items():
                self._running[key] += value

    def invoked(self, tenant: str, function: str, duration_ms: float, error: bool) -> None:
        key = (tenant, function)
        with self._lock:
            self._counts[INVOCATIONS][key] += 1
            if error:
                self._counts[ERRORS][key] += 1
            self._add(DURATION, key, duration_ms)

    def _add(self, name: str, key: Key, value: float) -> None:
        count, total = self._sums[name].get(key, (0, 0.0))
        self._sums[name][key] = (count + 1, total + value)

    def families(self, tenant: str | None = None) -> list[Metric]:
        """Every metric, with only `tenant`'s series unless None (all tenants)."""

        def mine(series: Mapping[Key, V]) -> Iterator[tuple[Key, V]]:
            return ((k, series[k]) for k in sorted(series) if tenant is None or k[0] == tenant)

        out: list[Metric] = []
        with self._lock:
            for name in COUNTERS:
                counter = CounterMetricFamily(name, _HELP[name], labels=LABELS)
                for key, value in mine(self._counts[name]):
                    counter.add_metric(list(key), float(value))
                out.append(counter)
            gauge = GaugeMetricFamily(RUNNING, _HELP[RUNNING], labels=LABELS)
            for key, value in mine(self._running):
                gauge.add_metric(list(key), float(value))
            out.append(gauge)
            for name, sums in self._sums.items():
                summary = SummaryMetricFamily(name, _HELP[name], labels=LABELS)
                for key, (count, total) in mine(sums):
                    summary.add_metric(list(key), count_value=count, sum_value=total)
                out.append(summary)
        return out

    def exposition(self, tenant: str | None = None) -> bytes:
        """The Prometheus text format of `families(tenant)`."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(self.families(tenant)))
        return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
