"""The same metrics as EMF on AWS: one Powertools `single_metric` per status change.

The platform Lambdas commit status changes (API and orchestrator handlers); each
change is printed as an Embedded Metric Format line to the function's log, which
CloudWatch turns into a metric with the tenant and function as dimensions.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from treadle.domain.notifications import StatusEvent
from treadle.observability.metrics import EXECUTION_DURATION, function_name, metric_names


class EmfMetrics:
    def __init__(self, namespace: str) -> None:
        self._namespace = namespace

    def status_changed(self, event: StatusEvent) -> None:
        dims = {"tenant": event.tenant, "function": function_name(event.function_arn)}
        for name in metric_names(event):
            self._put(name, MetricUnit.Count, 1, dims)
        if event.end_ms is not None:
            self._put(
                EXECUTION_DURATION, MetricUnit.Milliseconds, event.end_ms - event.start_ms, dims
            )

    def _put(self, name: str, unit: MetricUnit, value: float, dims: dict[str, str]) -> None:
        with single_metric(name=name, unit=unit, value=value, namespace=self._namespace) as m:
            for key, dim in dims.items():
                m.add_dimension(name=key, value=dim)
