"""Ports: what the domain needs from the outside world, as Protocols.

Every port has an embedded adapter (SQLite, local sandbox, threads) and an AWS one
(DynamoDB, Lambda, SQS); both pass the same contract suite under `tests/contract/`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from treadle.domain.audit import AuditRecord
from treadle.domain.code_refs import CodeRefs
from treadle.domain.models import DurableConfig, Event, Execution, ExecutionStatus, Operation
from treadle.domain.notifications import StatusEvent
from treadle.domain.usage import ExecutionCounts, FunctionCounts


class TimerKind(StrEnum):
    INVOKE = "INVOKE"  # run an invocation; while one runs, its lease deadline
    WAIT = "WAIT"
    RETRY = "RETRY"
    CALLBACK_TIMEOUT = "CALLBACK_TIMEOUT"
    CALLBACK_HEARTBEAT = "CALLBACK_HEARTBEAT"
    EXECUTION_TIMEOUT = "EXECUTION_TIMEOUT"
    RETENTION = "RETENTION"
    CHAINED_START = "CHAINED_START"  # start the target of a chained invoke (outbox)
    CHILD_DONE = "CHILD_DONE"  # a chained invoke's child execution closed


@dataclass(frozen=True)
class Timer:
    arn: str
    kind: TimerKind
    op_id: str  # "" for execution-level timers
    due_ms: int


@dataclass
class StoredOperation:
    op: Operation
    create_seq: int  # order of creation: the envelope's order
    change_seq: int  # last change: what a handler has not seen yet


@dataclass
class Snapshot:
    execution: Execution
    operations: dict[str, StoredOperation]


@dataclass
class Commit:
    """One atomic change of one execution.

    `execution.version_seq` is the version the change was computed from; the store
    applies the commit only if that is still the stored version (then increments it).

    A commit is one checkpoint batch (at most 250 updates from the SDK) or one backend
    event. The DynamoDB adapter writes it with one TransactWriteItems inside the limits
    (100 items, 4 MB, 400 KB each): the execution item updated on condition of
    `version_seq`, plus one append-only batch item keyed by (execution, version) holding
    this commit's operations, events, timers and callbacks (compressed; payloads over
    ~200 KB go to S3 first and are referenced). Operations and history are folded from
    the batch log (and cached), so the commit never needs one item per operation.
    """

    execution: Execution
    operations: list[StoredOperation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    set_timers: list[Timer] = field(default_factory=list)
    clear_timers: list[tuple[TimerKind, str]] = field(default_factory=list)
    clear_all_timers: bool = False
    # (callback id, operation id, heartbeat timeout seconds or 0)
    new_callbacks: list[tuple[str, str, int]] = field(default_factory=list)
    client_token: tuple[str, str] | None = None  # (ClientToken, stored response JSON)
    # The status change's event, written with it (the outbox: `domain/notifications`).
    status_event: StatusEvent | None = None
    # The audit record of the call that made this change, written with it (domain/audit).
    audit: AuditRecord | None = None
    # The stored (status, invocation_active) the change was computed from, which the
    # version check makes exact: a store may leave what did not move unwritten (None:
    # unknown, write both).
    before: tuple[ExecutionStatus, bool] | None = None


@dataclass(frozen=True)
class ExecutionQuery:
    statuses: frozenset[ExecutionStatus] | None = None
    name: str | None = None
    version: str | None = None
    started_after_ms: int | None = None
    started_before_ms: int | None = None
    reverse: bool = False
    marker: str | None = None
    limit: int = 100


class ExecutionStore(Protocol):
    def create(self, commit: Commit) -> None:
        """Insert a new execution; AlreadyExists if its (tenant, function, name) exists."""

    def create_batch(self, commits: Sequence[Commit]) -> list[bool]:
        """Insert new executions; per commit, False if its name existed (nothing written).

        SQLite: one transaction for the whole batch. DynamoDB: one transaction per
        execution (each needs ~5 items of the 100 a transaction holds), so a batch can
        be applied in part; a retry with the same names completes it (`docs/events.md`).
        """

    def create_linked(self, commit: Commit, source: Commit) -> None:
        """Insert a new execution and apply `source`, a commit of another (existing)
        execution, atomically: a redrive and its source's link to it.

        AlreadyExists if the new execution's name exists, ConcurrentModification if the
        source's version moved; either way nothing is written.
        """

    def find_by_name(self, tenant: str, function_name: str, name: str) -> Execution | None: ...

    def get(self, arn: str) -> Execution:
        """The execution record; NotFound if absent."""

    def load(self, arn: str) -> Snapshot:
        """Record and operations; NotFound if absent."""

    def commit(self, commit: Commit) -> None:
        """Apply atomically; ConcurrentModification if the version moved."""

    def events(
        self, arn: str, *, after_id: int, limit: int, reverse: bool = False
    ) -> list[Event]: ...

    def operations_page(self, arn: str, *, after_seq: int, limit: int) -> list[StoredOperation]:
        """Operations in creation order with create_seq > after_seq."""

    def find_event(self, arn: str, op_id: str, event_type: str) -> Event | None:
        """The first event of that type about that operation, if any."""

    def callback_owner(self, callback_id: str) -> tuple[str, str, int] | None:
        """(execution arn, operation id, heartbeat seconds) of a callback id, if known."""

    def client_token_response(self, arn: str, client_token: str) -> str | None: ...

    def due_timers(self, now_ms: int, limit: int) -> list[Timer]: ...

    def next_due_ms(self) -> int | None: ...

    def list_executions(
        self, tenant: str, function_name: str, query: ExecutionQuery
    ) -> tuple[list[Execution], str | None]: ...

    def active_invocations(self) -> list[str]:
        """ARNs of executions whose invocation lease is held (for crash recovery)."""

    def count_running(self, tenant: str) -> int:
        """The tenant's running executions for its quota: RUNNING and holding or awaiting
        an invocation (`domain/concurrency.py`); parked ones do not count. O(1)."""

    def usage(self, tenant: str, now_ms: int) -> ExecutionCounts:
        """The tenant's execution counters (`domain.usage`): a fixed number of reads."""

    def delete(self, arn: str, *, audit: AuditRecord | None = None) -> None:
        """`audit`: the DeleteExecution record, written with the removal."""


class CodeSource(BaseModel):
    """Where a deploy-from-ref took its code: a directory of one of the tenant's repos."""

    model_config = ConfigDict(extra="forbid")

    repository: str
    ref: str  # as asked for ("main", a tag, a sha)
    path: str  # "" for the repository's root
    commit_sha: str  # what `ref` resolved to when the code was read


class FunctionVersion(BaseModel):
    """An immutable function version (or the mutable $LATEST) as the engine sees it.

    Stored as one JSON document (and copied into each execution it pins), so a field
    added with a default reads old data unchanged: no schema migration needed.
    """

    model_config = ConfigDict(extra="forbid")

    tenant: str
    function_name: str
    version: str  # "$LATEST" or "1", "2", ...
    function_arn: str  # unqualified
    runtime: str = "python3.11"
    role: str = ""
    handler: str
    description: str = ""
    timeout_s: int = Field(default=3, ge=1, le=900)
    memory_mb: int = Field(default=128, ge=128, le=10240)
    # Lambda's EphemeralStorage: the size of the environment's /tmp.
    ephemeral_storage_mb: int = Field(default=512, ge=512, le=10240)
    environment: dict[str, str] = Field(default_factory=dict)
    durable_config: DurableConfig | None = None
    code_sha256: str  # base64 of the zip's SHA-256, as Lambda reports it
    code_size: int
    code_key: str  # hex SHA-256 of the zip: where the code store keeps it
    last_modified_ms: int
    revision_id: str
    # The commit of the tenant's `functions` repository whose `functions/<name>/` is
    # exactly this code (None: uploaded before code was mirrored into Git).
    commit_sha: str | None = None
    source: CodeSource | None = None  # set when the code was deployed from a repository ref

    @property
    def qualified_arn(self) -> str:
        return f"{self.function_arn}:{self.version}"

    @property
    def durable(self) -> bool:
        return self.durable_config is not None


class FunctionStore(CodeRefs, Protocol):
    """Versions of functions, and (`CodeRefs`) how many name each code package."""

    def put_latest(
        self,
        fn: FunctionVersion,
        *,
        create: bool,
        expected_revision: str | None = None,
        audit: AuditRecord | None = None,
    ) -> None:
        """Create (AlreadyExists if present) or replace $LATEST.

        `audit` (here, in `publish` and `delete`): the change's record, written in the
        same transaction (domain/audit.py).

        A replace given `expected_revision` applies only if that is still the stored
        RevisionId (else PreconditionFailed): a read-modify-write that loses no update.
        """

    def get(self, tenant: str, name: str, version: str = "$LATEST") -> FunctionVersion:
        """NotFound if absent."""

    def publish(
        self,
        tenant: str,
        name: str,
        description: str | None,
        *,
        audit: AuditRecord | None = None,
    ) -> FunctionVersion:
        """Freeze $LATEST as the next version number; return it (idempotent on same code)."""

    def list_latest(
        self, tenant: str, marker: str | None, limit: int
    ) -> tuple[list[FunctionVersion], str | None]: ...

    def list_versions(
        self, tenant: str, name: str, marker: str | None, limit: int
    ) -> tuple[list[FunctionVersion], str | None]: ...

    def delete(
        self,
        tenant: str,
        name: str,
        version: str | None = None,
        *,
        audit: AuditRecord | None = None,
        unless_pinned: bool = False,
    ) -> None:
        """The function with its versions and aliases (version None), or one version.

        NotFound if absent; Conflict if an alias points to that version (as on Lambda).
        `unless_pinned` (garbage collection): Conflict too if an execution that is not
        closed is pinned to that version (to any version, for the function), checked in
        the delete's own transaction, so no execution's commit races it.
        """

    def live_pins(self, tenant: str, name: str) -> dict[str, int]:
        """Version -> how many executions not closed are pinned to it (absent: none)."""

    def usage(self, tenant: str) -> tuple[int, int]:
        """(functions, code bytes of $LATEST and every published version), as Lambda counts."""

    def counts(self, tenant: str) -> FunctionCounts:
        """Functions, published versions and code bytes (`GET /v1/tenants/{id}/usage`)."""


class Alias(BaseModel):
    """A named pointer to one version of a function (Lambda's alias), stored as JSON."""

    model_config = ConfigDict(extra="forbid")

    tenant: str
    function_name: str
    name: str  # never all digits and never $LATEST: those are versions
    function_arn: str  # unqualified
    function_version: str  # "$LATEST" or a published version number
    description: str = ""
    revision_id: str

    @property
    def alias_arn(self) -> str:
        return f"{self.function_arn}:{self.name}"


class AliasStore(Protocol):
    """Aliases of functions.

    A port of its own, so the engine and quotas (which see only `FunctionStore`) do not
    grow alias methods; but both backends implement it in the same adapter class as
    their `FunctionStore`, because the invariants between the two must hold in one
    transaction: an alias names an existing version, a version an alias names cannot be
    deleted, and deleting a function deletes its aliases.
    """

    def create_alias(self, alias: Alias) -> None:
        """NotFound if the function or the version is absent; AlreadyExists if the name is."""

    def get_alias(self, tenant: str, function_name: str, name: str) -> Alias:
        """NotFound if absent."""

    def list_aliases(
        self,
        tenant: str,
        function_name: str,
        version: str | None,
        marker: str | None,
        limit: int,
    ) -> tuple[list[Alias], str | None]:
        """In name order, only those naming `version` if given; NotFound if no function."""

    def update_alias(self, alias: Alias, expected_revision: str) -> None:
        """Replace an alias whose stored RevisionId is `expected_revision`.

        NotFound if the alias or its new version is absent; PreconditionFailed if the
        alias changed since it was read.
        """

    def delete_alias(self, tenant: str, function_name: str, name: str) -> None:
        """NotFound if absent."""


@dataclass(frozen=True)
class InvocationOutcome:
    request_id: str
    payload: bytes | None  # the handler's JSON return value
    error: Mapping[str, Any] | None  # Lambda error payload when it did not return
    started_ms: int
    ended_ms: int


class FunctionRuntime(Protocol):
    def invoke(self, fn: FunctionVersion, payload: bytes, request_id: str) -> InvocationOutcome:
        """Run one invocation of a deployed version; never raises for handler faults."""

    def prepare(self, fn: FunctionVersion) -> None:
        """Get a version's code ready to run, ahead of its first invoke (its cold start).

        Best effort: invoke() does whatever was not done here.
        """


# Lambda's limit for unzipped code: CodeStore adapters refuse bigger packages, and code
# delivered from a repository is held to the same bound.
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024


class CodeStore(Protocol):
    def put(self, zip_bytes: bytes) -> str:
        """Store a code package; return its key (hex SHA-256). Idempotent."""

    def get(self, key: str) -> bytes: ...

    def restore(self, key: str, zip_bytes: bytes) -> None:
        """Store `zip_bytes` (already validated, of hash `key`) again if it is missing."""

    def delete(self, key: str) -> None:
        """Remove a package and every copy unpacked from it; no error if absent."""


class Clock(Protocol):
    def now_ms(self) -> int: ...


class Ids(Protocol):
    def execution_id(self) -> str: ...

    def request_id(self) -> str: ...

    def callback_id(self) -> str: ...

    def revision_id(self) -> str: ...


class Dispatcher(Protocol):
    """Gets each timer to the engine's `fire` at (not before) its due time.

    Timers are rows in the store, written with the change that sets them. The party
    that sets timers (the engine after a commit, the sweep) hands them to the
    dispatcher, which takes those it can deliver on time and returns the rest: the
    in-process scheduler (embedded) reads the rows itself and only needs waking, so it
    takes all; SQS (AWS) holds a message for at most 15 minutes, so a later timer is
    returned, stays a row, and the sweep hands it over again once it is near enough.

    Delivery is at least once and may repeat or come late: the store, not the message,
    is the truth. A consumer checks a delivered timer against the store (`TimerLookup`)
    before firing it, so a timer cleared or moved since it was sent is dropped.
    """

    def dispatch(self, timers: Sequence[Timer], now_ms: int) -> list[Timer]:
        """Arrange for each timer to reach `fire` once due; return those not taken.

        Raises a retryable TreadleError if some could not be handed over; they remain
        in the store, so the sweep delivers them later (late, never lost).
        """


class TimerSource(Protocol):
    """What the sweep reads: `ExecutionStore.due_timers`, earliest first."""

    def due_timers(self, now_ms: int, limit: int) -> list[Timer]: ...


class TimerLookup(Protocol):
    def is_set(self, timer: Timer) -> bool:
        """Whether the store still holds this timer (same execution, kind, op and due)."""


class CompletionListener(Protocol):
    def execution_closed(self, arn: str) -> None: ...


class LastUsedStore(Protocol):
    """When each dynamic resource was last used (`GET /v1/admin/inventory`), coarsely:
    `touch` writes only if the stored time is older than `LAST_USED_GRAIN_MS`, as one
    conditional write, so a busy resource costs at most one write a minute."""

    def touch(self, tenant: str, kind: str, resource: str, now_ms: int) -> bool:
        """Record a use at `now_ms`; True if it was written (the old one was stale)."""

    def last_used(self, tenant: str, kind: str) -> dict[str, int]:
        """Every recorded resource of that kind of the tenant -> last use (epoch ms)."""

    def forget(self, tenant: str, kind: str, resource: str) -> None:
        """Drop the record (the resource was deleted)."""
