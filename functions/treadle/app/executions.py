"""Invoke and the durable-execution control plane, tenant-scoped."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from treadle.app.aliases import resolve
from treadle.app.completion import CompletionNotifier
from treadle.app.quotas import Quotas
from treadle.domain.engine import Engine
from treadle.domain.engine.batch import Started
from treadle.domain.engine.redrive import FromStep, Redriven
from treadle.domain.errors import InvalidParameter, NotFound, TreadleError
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    Event,
    Execution,
    ExecutionStatus,
)
from treadle.domain.ports import (
    AliasStore,
    ExecutionQuery,
    FunctionRuntime,
    FunctionStore,
    FunctionVersion,
    Ids,
)

log = logging.getLogger(__name__)

# The longest a synchronous invoke of a durable function may wait (Lambda's own limit);
# a deployment may set less (`Settings.sync_invoke_wait_s`: 25 behind API Gateway).
SYNC_INVOKE_LIMIT_S = 900.0
SYNC_INVOKE_TIMEOUT_ERROR = "Treadle.SyncInvokeTimeout"
MAX_BATCH = 100  # executions per batch start (and per batch redrive)
# A batch redrive reads at most this many matching executions looking for ones not
# redriven yet: the rest wait for the next call.
_REDRIVE_SCAN = 1000
_FUNCTION_REF = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?:(?P<account>\d{12}):)?"
    r"(?:function:)?(?P<name>[a-zA-Z0-9\-_]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9\-_]+))?$"
)
# Also the OpenAPI document's schema of an `{Arn}` path parameter (so no named group:
# JSON Schema patterns are ECMA-262). Group 1 is the account.
EXECUTION_ARN_PATTERN = (
    r"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:(\d{12}):function:[a-zA-Z0-9_-]+:"
    r"(?:\$LATEST|[0-9]+)/durable-execution/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+$"
)
_EXEC_ARN = re.compile(EXECUTION_ARN_PATTERN)


@dataclass(frozen=True)
class InvokeResult:
    status_code: int
    payload: bytes
    executed_version: str
    execution_arn: str | None = None
    function_error: str | None = None
    request_id: str | None = None  # a plain function's invocation (its log lines name it)


def parse_function_ref(tenant: str, ref: str, qualifier: str | None) -> tuple[str, str | None]:
    m = _FUNCTION_REF.match(ref)
    if m is None:
        raise InvalidParameter(f"Invalid function name or ARN: {ref}")
    if m.group("account") and m.group("account") != tenant:
        raise NotFound(f"Function not found: {ref}")
    q = m.group("qualifier")
    if q and qualifier and q != qualifier:
        raise InvalidParameter("The derived qualifier from the function name does not match.")
    return m.group("name"), q or qualifier


def check_execution_arn(tenant: str, arn: str) -> str:
    m = _EXEC_ARN.match(arn)
    if m is None:
        raise InvalidParameter(f"Invalid durable execution ARN: {arn}")
    if m.group(1) != tenant:
        raise NotFound(f"Durable execution {arn} not found.")
    return arn


class ExecutionService:
    def __init__(
        self,
        *,
        engine: Engine,
        functions: FunctionStore,
        runtime: FunctionRuntime,
        notifier: CompletionNotifier,
        ids: Ids,
        quotas: Quotas,
        sync_invoke_wait_s: float = SYNC_INVOKE_LIMIT_S,
        aliases: AliasStore | None = None,
    ) -> None:
        self.aliases = aliases
        if not 0 < sync_invoke_wait_s <= SYNC_INVOKE_LIMIT_S:
            raise ValueError(f"sync_invoke_wait_s must be in (0, {SYNC_INVOKE_LIMIT_S:g}]")
        self.engine = engine
        self.functions = functions
        self.runtime = runtime
        self.notifier = notifier
        self.ids = ids
        self.quotas = quotas
        self.sync_invoke_wait_s = sync_invoke_wait_s
        self._async = ThreadPoolExecutor(max_workers=16, thread_name_prefix="async-invoke")

    def invoke(
        self,
        tenant: str,
        ref: str,
        qualifier: str | None,
        payload: bytes,
        invocation_type: str,
        execution_name: str | None,
    ) -> InvokeResult:
        name, qualifier = parse_function_ref(tenant, ref, qualifier)
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            raise InvalidParameter(f"Invalid InvocationType {invocation_type}.")
        # An alias is resolved once, here: the execution pins the version it names now.
        fn = resolve(self.functions, self.aliases, tenant, name, qualifier)
        text = payload.decode("utf-8", errors="strict") if payload else ""
        if text.strip():
            try:
                json.loads(text)
            except ValueError:
                raise InvalidParameter("Could not parse request body into json.") from None
        if invocation_type == "DryRun":
            return InvokeResult(204, b"", fn.version)
        if not fn.durable:
            return self._invoke_plain(fn, payload, invocation_type)
        if execution_name is not None and not re.fullmatch(r"[a-zA-Z0-9\-_]{1,64}", execution_name):
            raise InvalidParameter(f"Invalid durable execution name: {execution_name}")
        limits, queued = self.quotas.admit_start(tenant)
        ex, _ = self.engine.start(fn, execution_name, text or None, limits=limits, queued=queued)
        if invocation_type == "Event":
            return InvokeResult(202, b"", fn.version, ex.arn)
        self.notifier.wait(ex.arn, self.sync_invoke_wait_s, lambda: self._closed(ex.arn))
        final = self.engine.store.get(ex.arn)
        if final.status.value == "SUCCEEDED":
            return InvokeResult(200, (final.result or "null").encode(), fn.version, ex.arn)
        if final.status in TERMINAL_EXECUTION_STATUSES:
            err = final.error
            body = {
                "errorType": err.ErrorType if err else final.status.value,
                "errorMessage": err.ErrorMessage if err else "",
            }
            if err and err.StackTrace:
                body["stackTrace"] = err.StackTrace  # type: ignore[assignment]
            return InvokeResult(200, json.dumps(body).encode(), fn.version, ex.arn, "Unhandled")
        return self._still_running(fn, ex.arn)

    def _still_running(self, fn: FunctionVersion, arn: str) -> InvokeResult:
        """The wait ended before the execution closed; it runs on. A function error, not a
        5xx: SDK clients retry 5xx, and each retry without an execution name would start
        another execution."""
        if self.notifier.stopping:
            message = (
                f"Durable execution {arn} is still running: the platform is stopping, and "
                "the execution continues once it is back. Poll GetDurableExecution with its "
                "ARN for the result."
            )
        else:
            message = (
                f"Durable execution {arn} is still running after {self.sync_invoke_wait_s:g} s, "
                "the longest a synchronous invoke waits here. It continues: poll "
                "GetDurableExecution with its ARN for the result, or invoke long executions "
                "with InvocationType=Event."
            )
        body = {"errorType": SYNC_INVOKE_TIMEOUT_ERROR, "errorMessage": message}
        return InvokeResult(200, json.dumps(body).encode(), fn.version, arn, "Unhandled")

    def _closed(self, arn: str) -> bool:
        try:
            return self.engine.store.get(arn).status in TERMINAL_EXECUTION_STATUSES
        except NotFound:
            return True

    def _invoke_plain(
        self, fn: FunctionVersion, payload: bytes, invocation_type: str
    ) -> InvokeResult:
        request_id = self.ids.request_id()
        if invocation_type == "Event":
            self._async.submit(self.runtime.invoke, fn, payload or b"{}", request_id)
            return InvokeResult(202, b"", fn.version, request_id=request_id)
        outcome = self.runtime.invoke(fn, payload or b"{}", request_id)
        if outcome.error is not None:
            error = json.dumps(dict(outcome.error)).encode()
            return InvokeResult(200, error, fn.version, None, "Unhandled", request_id)
        return InvokeResult(200, outcome.payload or b"null", fn.version, request_id=request_id)

    # -- control plane -------------------------------------------------------------

    def get(self, tenant: str, arn: str) -> Execution:
        return self.engine.store.get(check_execution_arn(tenant, arn))

    def history(
        self, tenant: str, arn: str, *, marker: str | None, max_items: int | None, reverse: bool
    ) -> tuple[list[Event], str | None]:
        self.get(tenant, arn)
        limit = _limit(max_items, default=100)
        try:
            after = int(marker) if marker else 0
        except ValueError:
            raise InvalidParameter(f"Invalid marker {marker!r}.") from None
        events = self.engine.store.events(arn, after_id=after, limit=limit + 1, reverse=reverse)
        more = len(events) > limit
        events = events[:limit]
        return events, (str(events[-1].EventId) if more else None)

    def start_batch(
        self,
        tenant: str,
        function_name: str,
        qualifier: str | None,
        entries: Sequence[tuple[str | None, str | None]],
    ) -> list[Started | TreadleError]:
        """Start up to MAX_BATCH executions of one function version at once; each entry
        (name, input JSON) gets its (execution, created) or its own error."""
        if not 1 <= len(entries) <= MAX_BATCH:
            raise InvalidParameter(f"A batch holds 1 to {MAX_BATCH} executions.")
        fn = self.functions.get(tenant, function_name, qualifier or "$LATEST")
        if not fn.durable:
            raise InvalidParameter(f"Function {function_name} is not durable: nothing to start.")
        results: list[Started | TreadleError | None] = [None] * len(entries)
        admitted: list[int] = []
        queued: list[bool] = []
        limits = None  # the same tenant read for all: any admitted start's will do
        # Each entry is admitted as a start of its own (runs, QUEUED, or its own 429).
        for i, admission in enumerate(self.quotas.admit_starts(tenant, len(entries))):
            if isinstance(admission, TreadleError):
                results[i] = admission
                continue
            limits, held = admission
            admitted.append(i)
            queued.append(held)
        started = self.engine.start_batch(fn, [entries[i] for i in admitted], limits, queued)
        for i, result in zip(admitted, started, strict=True):
            results[i] = result
        return [r for r in results if r is not None]

    # -- redrive (`domain/engine/redrive.py`) -------------------------------------------

    def redrive(
        self,
        tenant: str,
        arn: str,
        from_step: FromStep | None,
        version: str | None,
        name: str | None = None,
    ) -> Redriven:
        """A new execution of a closed one from a step, on its version or `version`."""
        source = self.get(tenant, arn)
        fn = None
        if version is not None:
            fn = self.functions.get(tenant, source.function_name, version)
            if not fn.durable:
                raise InvalidParameter(
                    f"Version {version} of {source.function_name} is not durable."
                )
        if name is not None and not re.fullmatch(r"[a-zA-Z0-9\-_]{1,64}", name):
            raise InvalidParameter(f"Invalid durable execution name: {name}")
        # Admitted as any start: over the running limit or the rate, it waits QUEUED.
        limits, queued = self.quotas.admit_start(tenant)
        return self.engine.redrive(source.arn, fn, from_step, name, limits, queued)

    def redrive_batch(
        self,
        tenant: str,
        function_name: str,
        query: ExecutionQuery,
        from_step: FromStep | None,
        version: str | None,
    ) -> list[tuple[Execution, Redriven | TreadleError]]:
        """Redrive up to `query.limit` closed executions matching `query` that were not
        redriven before (so calling again goes on where the last call stopped); each
        gets its redrive or its own error."""
        if not 1 <= query.limit <= MAX_BATCH:
            raise InvalidParameter(f"A batch redrives 1 to {MAX_BATCH} executions.")
        self.functions.get(tenant, function_name)
        statuses = query.statuses or frozenset({ExecutionStatus.FAILED})
        if not statuses <= TERMINAL_EXECUTION_STATUSES:
            raise InvalidParameter("Only closed executions can be redriven.")
        page = ExecutionQuery(**{**query.__dict__, "statuses": statuses, "limit": 100})
        chosen: list[Execution] = []
        scanned = 0
        while len(chosen) < query.limit and scanned < _REDRIVE_SCAN:
            found, marker = self.engine.store.list_executions(tenant, function_name, page)
            scanned += len(found)
            chosen.extend(ex for ex in found if not ex.redriven_to)
            if marker is None:
                break
            page = ExecutionQuery(**{**page.__dict__, "marker": marker})
        out: list[tuple[Execution, Redriven | TreadleError]] = []
        for ex in chosen[: query.limit]:
            try:
                out.append((ex, self.redrive(tenant, ex.arn, from_step, version)))
            except TreadleError as exc:
                out.append((ex, exc))
        return out

    # -- events (`domain/engine/events.py`) ---------------------------------------------

    def send_event(
        self, tenant: str, arn: str, event_type: str, payload: str | None, ttl_s: int
    ) -> str:
        """ "delivered" to an open wait or "buffered"; NotFound for another tenant's."""
        return self.engine.send_event(check_execution_arn(tenant, arn), event_type, payload, ttl_s)

    def by_name(self, tenant: str, function_name: str, name: str) -> Execution:
        """The execution of a function by its execution name (unique per function)."""
        found = self.engine.store.find_by_name(tenant, function_name, name)
        if found is None:
            raise NotFound(f"Durable execution {name} of function {function_name} not found.")
        return found

    def list_by_function(
        self, tenant: str, ref: str, query: ExecutionQuery
    ) -> tuple[list[Execution], str | None]:
        name, qualifier = parse_function_ref(tenant, ref, query.version)
        self.functions.get(tenant, name)
        q = ExecutionQuery(**{**query.__dict__, "version": qualifier})
        return self.engine.store.list_executions(tenant, name, q)


def _limit(max_items: int | None, default: int) -> int:
    if max_items is None or max_items == 0:
        return default
    if not 1 <= max_items <= 1000:
        raise InvalidParameter("MaxItems must be between 0 and 1000.")
    return max_items
