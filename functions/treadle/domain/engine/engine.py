"""The durable execution engine: load -> change -> commit, and the table of timers.

`Engine` owns the mechanics every change of an execution shares: the per-execution
lock, loading a snapshot into a working set, committing it (retried when another
writer won the race), and after the commit handing the timers it set to the
dispatcher and telling the completion listener about a close. What a change does is
in the lifecycle modules, plain functions over (Execution, WorkingSet): `start`,
`invocation`, `checkpoint`, `timers`, `callbacks`, `chained`, `control`, `closing`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from treadle.domain.audit import AuditRecord, pending_record
from treadle.domain.concurrency import frees_slot
from treadle.domain.engine import (
    batch,
    callbacks,
    chained,
    control,
    events,
    handover,
    invocation,
    queue,
    redrive,
    starting,
    timers,
)
from treadle.domain.engine.checkpoint import CheckpointResult, apply_checkpoint
from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.tokens import TokenCodec
from treadle.domain.engine.working_set import WorkingSet, open_working_set, to_commit
from treadle.domain.errors import (
    ConcurrentModification,
    Conflict,
    InvalidParameter,
    InvalidToken,
    NotFound,
    PayloadTooLarge,
    Throttled,
    TreadleError,
    Unavailable,
)
from treadle.domain.lanes import InvocationLanes
from treadle.domain.models import (
    TERMINAL_EXECUTION_STATUSES,
    CheckpointRequest,
    ErrorObject,
    Execution,
    ExecutionLimits,
    Operation,
)
from treadle.domain.notifications import StatusEvent
from treadle.domain.ports import (
    Clock,
    Commit,
    CompletionListener,
    Dispatcher,
    ExecutionStore,
    FunctionRuntime,
    FunctionStore,
    FunctionVersion,
    Ids,
    Timer,
    TimerKind,
)

log = logging.getLogger(__name__)

R = TypeVar("R")
# A due timer's change of its own (open) execution.
TimerChange = Callable[[Execution, WorkingSet, Timer, EngineConfig], None]

_COMMIT_ATTEMPTS = 8


class Engine:
    def __init__(
        self,
        *,
        store: ExecutionStore,
        functions: FunctionStore,
        runtime: FunctionRuntime,
        clock: Clock,
        ids: Ids,
        tokens: TokenCodec,
        dispatcher: Dispatcher,
        listener: CompletionListener,
        config: EngineConfig | None = None,
        status_listeners: Sequence[Callable[[StatusEvent], None]] = (),
        slot_listeners: Sequence[Callable[[str], None]] = (),
        lanes: InvocationLanes | None = None,
    ) -> None:
        self.store = store
        # Where a start may hand its first invocation straight over (embedded).
        self.lanes = lanes
        self.functions = functions
        self.runtime = runtime
        self.clock = clock
        self.ids = ids
        self.tokens = tokens
        self.dispatcher = dispatcher
        self.listener = listener
        self.config = config or EngineConfig()
        # Told each committed status change (log lines, metrics): after the commit, so
        # they never count a change that did not happen. Cheap and in memory.
        self.status_listeners = tuple(status_listeners)
        # Told the ARN of each execution whose commit freed its running slot (it parked,
        # paused or closed: `domain/concurrency.py`), so queued starts take it at once.
        self.slot_listeners = tuple(slot_listeners)
        self._locks = [threading.RLock() for _ in range(512)]
        # Where each kind of timer is handled: one row per TimerKind.
        self.timer_handlers: Mapping[TimerKind, Callable[[Timer], None]] = {
            TimerKind.INVOKE: lambda timer: self.run_invocation(timer.arn, timer.due_ms),
            TimerKind.WAIT: self._timer_change(timers.wait_elapsed),
            TimerKind.RETRY: self._timer_change(timers.retry_due),
            TimerKind.CALLBACK_TIMEOUT: self._timer_change(callbacks.timed_out),
            TimerKind.CALLBACK_HEARTBEAT: self._timer_change(callbacks.timed_out),
            TimerKind.EXECUTION_TIMEOUT: self._timer_change(timers.execution_timed_out),
            TimerKind.RETENTION: lambda timer: self.store.delete(timer.arn),
            TimerKind.CHAINED_START: self._start_child,
            TimerKind.CHILD_DONE: self._child_done,
        }

    # -- load -> change -> commit ----------------------------------------------------

    def _lock(self, arn: str) -> threading.RLock:
        return self._locks[hash(arn) % len(self._locks)]

    def _change(self, arn: str, change: Callable[[Execution, WorkingSet], R]) -> R:
        """Load, change and commit one execution, serialised per execution.

        The lock serialises writers in this process; the store's version check makes
        the commit safe against writers elsewhere, and a lost race is retried. A change
        that touched nothing writes nothing.
        """
        audit: AuditRecord | None = None
        for _ in range(_COMMIT_ATTEMPTS):
            with self._lock(arn):
                snap = self.store.load(arn)
                ex, ws = open_working_set(snap, self.clock.now_ms())
                result = change(ex, ws)
                if ws.untouched() and ex == snap.execution:
                    return result
                # A request's audited change (stop, pause, ...) carries its record; taken
                # once, and kept for a retry after a lost race.
                audit = audit or pending_record(resource=arn)
                commit = to_commit(ex, ws, self.config.wait_time_scale, audit)
                try:
                    self.store.commit(commit)
                except ConcurrentModification:
                    log.info("concurrent change of %s; retrying", arn)
                    continue
            self.after_commit(commit)
            return result
        raise ConcurrentModification(f"Execution {arn} is changing too fast; try again.")

    def after_commit(self, commit: Commit) -> None:
        self._dispatch(commit.set_timers)
        if commit.status_event is not None:
            for listener in self.status_listeners:
                try:
                    listener(commit.status_event)
                except Exception:  # observing must not fail a change that happened
                    log.exception("status listener failed on %s", commit.execution.arn)
        if self.slot_listeners and frees_slot(commit):
            for tell in self.slot_listeners:
                try:
                    tell(commit.execution.arn)
                except Exception:
                    log.exception("slot listener failed on %s", commit.execution.arn)
        if commit.execution.status in TERMINAL_EXECUTION_STATUSES:
            self.listener.execution_closed(commit.execution.arn)

    def _dispatch(self, timers_set: Sequence[Timer]) -> None:
        """Timers a commit just wrote: get them to whoever fires them."""
        if not timers_set:
            return
        try:
            self.dispatcher.dispatch(timers_set, self.clock.now_ms())
        except Exception:
            # The commit stands and its timers are rows: the sweep's overdue net sends
            # them late rather than never. Failing the caller would report a change
            # that happened as one that did not.
            log.exception("could not dispatch %d timers; the sweep will", len(timers_set))

    # -- start and invocations ---------------------------------------------------------

    def start(
        self,
        fn: FunctionVersion,
        name: str | None,
        input_payload: str | None,
        *,
        parent: tuple[str, str] | None = None,
        exec_id: str | None = None,
        limits: ExecutionLimits | None = None,
        queued: bool = False,
    ) -> tuple[Execution, bool]:
        """Start an execution, idempotently on its name, under `limits` (pinned; default
        AWS's); `queued`: accept it QUEUED, to be promoted later. Returns (execution,
        created). A free lane slot runs its first invocation at once (`starting.py`)."""
        return starting.start(
            self, fn, name, input_payload, parent=parent, exec_id=exec_id, limits=limits,
            queued=queued,
        )  # fmt: skip

    def start_batch(
        self,
        fn: FunctionVersion,
        entries: Sequence[tuple[str | None, str | None]],
        limits: ExecutionLimits | None = None,
        queued: Sequence[bool] = (),
    ) -> list[batch.Started | TreadleError]:
        """Start many executions of one version with one `create_batch`: per entry
        (name, input), (execution, created) or the error of that entry alone; entry i
        is accepted QUEUED if `queued[i]`."""
        return starting.start_batch(self, fn, entries, limits, queued)

    def redrive(
        self,
        source_arn: str,
        fn: FunctionVersion | None,
        from_step: redrive.FromStep | None,
        name: str | None = None,
        limits: ExecutionLimits | None = None,
        queued: bool = False,
    ) -> redrive.Redriven:
        """A new execution of a closed one, from a step (`redrive.py`), QUEUED if
        `queued`. Serialised per source here, as changes are; the source's version
        fences other processes."""
        with self._lock(source_arn):
            return redrive.run(self, source_arn, fn, from_step, name, limits, queued)

    def run_invocation(self, arn: str, due_ms: int | None = None) -> None:
        """Take the invocation lease, invoke the pinned version, act on its result
        (`due_ms`: of the INVOKE timer that asked, to tell a stale copy of it)."""

        def begin(ex: Execution, ws: WorkingSet) -> invocation.Begun | None:
            return invocation.begin(
                ex,
                ws,
                functions=self.functions,
                ids=self.ids,
                tokens=self.tokens,
                config=self.config,
                due_ms=due_ms,
            )

        try:
            begun = self._change(arn, begin)
        except NotFound:
            return
        if begun is None:
            return
        self.invoke_leased(arn, begun)

    def invoke_leased(self, arn: str, begun: invocation.Begun) -> None:
        """Invoke under the lease `begun` took; act on the outcome."""
        started_ms = self.clock.now_ms()
        try:
            outcome = self.runtime.invoke(begun.fn, begun.payload, begun.request_id)
        except (Throttled, Unavailable) as exc:
            log.warning("invocation of %s not started (%s); retrying soon", arn, exc)
            self._change(
                arn,
                lambda ex, ws: invocation.not_started(ex, ws, begun.generation, self.config),
            )
            return
        self._change(
            arn,
            lambda ex, ws: invocation.finish(
                ex, ws, begun.generation, outcome, self.config, started_ms
            ),
        )

    def recover(self) -> int:
        """After a restart: invocations that were running died with the old process."""
        arns = self.store.active_invocations()
        now = self.clock.now_ms()
        for arn in arns:
            self._change(arn, lambda ex, ws: invocation.expire_lease(ex, ws, now))
        return len(arns)

    # -- the handler's data plane ------------------------------------------------------

    def checkpoint(self, arn: str, request: CheckpointRequest) -> CheckpointResult:
        claims = self.tokens.decode(request.CheckpointToken)
        if not arn.endswith("/" + claims.exec_id):
            raise InvalidToken("Invalid checkpoint token: it belongs to another execution.")

        def change(ex: Execution, ws: WorkingSet) -> CheckpointResult:
            if request.ClientToken:
                stored = self.store.client_token_response(ex.arn, request.ClientToken)
                if stored is not None:
                    return CheckpointResult.model_validate_json(stored)
            return apply_checkpoint(
                ex, ws, claims, request, functions=self.functions, ids=self.ids, tokens=self.tokens
            )

        return self._change(arn, change)

    def get_state(
        self, arn: str, token: str, marker: str | None, max_items: int | None
    ) -> tuple[list[Operation], str | None]:
        claims = self.tokens.decode(token)
        ex = self.store.get(arn)
        if claims.exec_id != ex.exec_id or claims.generation != ex.generation:
            raise InvalidToken(
                "Invalid checkpoint token: it is not the current one of this execution."
            )
        try:
            after = int(marker) if marker else 0
        except ValueError:
            raise InvalidParameter(f"Invalid marker {marker!r}.") from None
        stored = self.store.operations_page(arn, after_seq=after, limit=(max_items or 1000) + 1)
        page, next_marker = invocation.page(stored, after, self.config, max_items)
        return [s.op for s in page], next_marker

    # -- timers ------------------------------------------------------------------------

    def fire(self, timer: Timer) -> None:
        """Act on a due timer; every path clears the timer it fired."""
        self.timer_handlers[timer.kind](timer)

    def _timer_change(self, handler: TimerChange) -> Callable[[Timer], None]:
        """A timer that changes only its own execution, in one commit that clears it."""

        def fire(timer: Timer) -> None:
            def change(ex: Execution, ws: WorkingSet) -> None:
                ws.clear_timers.append((timer.kind, timer.op_id))
                if ex.status not in TERMINAL_EXECUTION_STATUSES:
                    handler(ex, ws, timer, self.config)

            try:
                handover.change_then_invoke(self, timer.arn, change)
            except NotFound:
                log.debug("timer of a deleted execution %s", timer.arn)

        return fire

    def _child_done(self, timer: Timer) -> None:
        handover.change_then_invoke(
            self, timer.arn, lambda ex, ws: chained.child_done(ex, ws, timer, self.store)
        )

    def _start_child(self, timer: Timer) -> None:
        """CHAINED_START: start the durable child, or run the plain function now."""
        parent = self.store.get(timer.arn)
        started = self.store.find_event(timer.arn, timer.op_id, "ChainedInvokeStarted")
        if started is None or parent.status in TERMINAL_EXECUTION_STATUSES:
            self._clear(timer)
            return
        details = (started.model_extra or {}).get("ChainedInvokeStartedDetails", {})
        name, qualifier = chained.split_ref(details["FunctionName"])
        input_payload = details.get("Input", {}).get("Payload")
        try:
            target = self.functions.get(parent.tenant, name, qualifier or "$LATEST")
        except NotFound as exc:
            error = ErrorObject(ErrorType="ResourceNotFoundException", ErrorMessage=exc.message)
            self._plain_outcome(timer, None, error)
            return
        if target.durable:
            child_id = chained.child_execution_id(parent.arn, timer.op_id)
            # The child runs under its parent's pinned limits: no tenant lookup here.
            self.start(
                target, child_id, input_payload, parent=(parent.arn, timer.op_id),
                exec_id=child_id, limits=parent.limits,
            )  # fmt: skip
            self._clear(timer)
            return
        outcome = self.runtime.invoke(
            target, (input_payload or "null").encode(), self.ids.request_id()
        )
        if outcome.error is not None:
            err = outcome.error
            error = ErrorObject(
                ErrorType=str(err.get("errorType", "Error")),
                ErrorMessage=str(err.get("errorMessage", "")),
            )
            self._plain_outcome(timer, None, error)
        else:
            self._plain_outcome(timer, (outcome.payload or b"null").decode(), None)

    def _plain_outcome(self, timer: Timer, result: str | None, error: ErrorObject | None) -> None:
        handover.change_then_invoke(
            self, timer.arn, lambda ex, ws: chained.plain_outcome(ex, ws, timer, result, error)
        )

    def _clear(self, timer: Timer) -> None:
        self._change(timer.arn, lambda ex, ws: ws.clear_timers.append((timer.kind, timer.op_id)))

    # -- callbacks ---------------------------------------------------------------------

    def _callback_target(self, tenant: str, callback_id: str) -> tuple[str, str, int]:
        owner = self.store.callback_owner(callback_id)
        # The account field of the ARN, exactly: a substring test could match a name.
        if owner is None or owner[0].split(":")[4:5] != [tenant]:
            raise NotFound(f"Callback {callback_id} not found.")
        return owner

    def complete_callback(
        self,
        tenant: str,
        callback_id: str,
        *,
        result: str | None = None,
        error: ErrorObject | None = None,
    ) -> None:
        arn, op_id, _ = self._callback_target(tenant, callback_id)
        limit = callbacks.MAX_CALLBACK_RESULT_BYTES
        if result is not None and len(result.encode()) > limit:
            raise PayloadTooLarge(f"Callback result exceeds {limit} bytes.")
        handover.change_then_invoke(
            self, arn, lambda ex, ws: callbacks.complete(ex, ws, op_id, result, error)
        )

    def send_event(
        self, arn: str, event_type: str, payload: str | None, ttl_s: int = events.DEFAULT_TTL_S
    ) -> str:
        """Deliver an event to an open wait of its type, or buffer it: "delivered" or
        "buffered" (`events.py`)."""
        events.check_type(event_type)
        limit = events.MAX_EVENT_PAYLOAD_BYTES
        if payload is not None and len(payload.encode()) > limit:
            raise PayloadTooLarge(f"Event payload exceeds {limit} bytes.")
        if not 1 <= ttl_s <= events.MAX_TTL_S:
            raise InvalidParameter(f"ttlSeconds must be between 1 and {events.MAX_TTL_S}.")
        return handover.change_then_invoke(
            self, arn, lambda ex, ws: events.send(ex, ws, event_type, payload, ttl_s)
        )

    def heartbeat_callback(self, tenant: str, callback_id: str) -> None:
        arn, op_id, heartbeat_s = self._callback_target(tenant, callback_id)
        self._change(arn, lambda ex, ws: callbacks.heartbeat(ex, ws, op_id, heartbeat_s))

    # -- control plane -----------------------------------------------------------------

    def stop(self, arn: str, error: ErrorObject | None) -> int:
        return self._change(arn, lambda ex, ws: control.stop(ex, ws, error))

    def promote(self, arn: str) -> bool:
        """Start a QUEUED execution now; False if it is not queued any more."""
        return self._change(arn, queue.promote)

    def pause(self, arn: str, reason: str | None, timeout_paused: bool) -> None:
        self._change(arn, lambda ex, ws: control.pause(ex, ws, reason, timeout_paused))

    def resume(self, arn: str, reason: str | None) -> None:
        handover.change_then_invoke(self, arn, lambda ex, ws: control.resume(ex, ws, reason))

    def delete(self, arn: str) -> int:
        with self._lock(arn):
            ex = self.store.get(arn)
            if ex.status not in TERMINAL_EXECUTION_STATUSES:
                raise Conflict("Only a closed execution can be deleted; stop it first.")
            self.store.delete(arn, audit=pending_record(resource=arn))
        return self.clock.now_ms()
