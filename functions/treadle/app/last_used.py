"""Recording uses of function versions, repositories and facets for the inventory.

A use is noted in memory first: within a minute of the last note for that resource,
nothing is written at all; otherwise the store's conditional write decides (another
process may have written it meanwhile). So a hot function costs at most one write a
minute per process, never one per invocation, and a failure to record is logged, not
raised: a use must never fail because its bookkeeping did.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from treadle.domain.errors import TreadleError
from treadle.domain.ports import (
    Clock,
    FunctionRuntime,
    FunctionVersion,
    InvocationOutcome,
    LastUsedStore,
)
from treadle.domain.usage import FUNCTION_VERSION, LAST_USED_GRAIN_MS

log = logging.getLogger(__name__)

MEMO_SIZE = 10_000


def version_id(fn: FunctionVersion) -> str:
    return f"{fn.function_name}:{fn.version}"


class UseRecorder:
    def __init__(self, store: LastUsedStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._noted: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self._lock = threading.Lock()

    def used(self, tenant: str, kind: str, resource: str) -> None:
        now = self._clock.now_ms()
        key = (tenant, kind, resource)
        with self._lock:
            noted = self._noted.get(key)
            if noted is not None and now - noted <= LAST_USED_GRAIN_MS:
                return
            self._noted[key] = now
            self._noted.move_to_end(key)
            while len(self._noted) > MEMO_SIZE:
                self._noted.popitem(last=False)
        try:
            self._store.touch(tenant, kind, resource, now)
        except TreadleError as exc:
            log.warning("could not record the use of %s %s of %s: %s", kind, resource, tenant, exc)


class RecordingRuntime:
    """A FunctionRuntime that notes each invoked version as used, then invokes it."""

    def __init__(self, runtime: FunctionRuntime, recorder: UseRecorder) -> None:
        self._runtime = runtime
        self._recorder = recorder

    def invoke(self, fn: FunctionVersion, payload: bytes, request_id: str) -> InvocationOutcome:
        self._recorder.used(fn.tenant, FUNCTION_VERSION, version_id(fn))
        return self._runtime.invoke(fn, payload, request_id)

    def prepare(self, fn: FunctionVersion) -> None:
        self._runtime.prepare(fn)
