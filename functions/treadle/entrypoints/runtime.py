"""What the three handlers share: Powertools' objects and the per-container platform."""

from __future__ import annotations

import threading
from typing import Final

from aws_lambda_powertools import Logger, Metrics, Tracer

from treadle.observability import tracing
from treadle.observability.emf import EmfMetrics
from treadle.platform.aws import AwsPlatform
from treadle.settings import Settings

# The stack sets POWERTOOLS_SERVICE_NAME / _METRICS_NAMESPACE to these too (infra/names.py);
# given here so that the handlers behave the same wherever they run.
SERVICE: Final = "treadle"
NAMESPACE: Final = "Treadle"

# Named after the package: the platform's own `treadle.*` loggers propagate into it, so
# their records come out as JSON with the invocation's context too.
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

_lock = threading.Lock()
_platform: AwsPlatform | None = None


def platform() -> AwsPlatform:
    """The container's platform, built on first use and kept while the container lives."""
    global _platform
    with _lock:
        if _platform is None:
            # The stack made every resource: never create one, even when an emulator
            # (LocalStack sets AWS_ENDPOINT_URL in its Lambda containers) is the endpoint.
            settings = Settings.from_env(backend="aws")
            built = AwsPlatform(settings, create_resources=False)
            # The handlers commit status changes: each becomes EMF metrics in its log.
            emf = EmfMetrics(settings.metrics_namespace)
            built.engine.status_listeners = (*built.engine.status_listeners, emf.status_changed)
            tracing.configure(settings.otel_exporter)
            built.start_sandbox()
            _platform = built
        return _platform


def reset() -> None:
    """Drop the platform (tests: each has its own moto state and environment)."""
    global _platform
    with _lock:
        if _platform is not None:
            _platform.close()
        _platform = None
