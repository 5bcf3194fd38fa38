"""The audit log: who changed what, when, from where, and how it ended.

A record is written by the store that makes the change, inside the change's own
transaction (SQLite) or TransactWriteItems (DynamoDB): a change without its record
cannot exist. A refused call (bad input, 403, 404, quota) changed nothing, so its
record is appended on its own.

Who and where reach the use cases through `AuditScope`, a context object the API
layer opens around a mutating request (key id, principal kind, tenant, source
address, the action). It travels in a `ContextVar` rather than as a parameter of every
use case: the request runs on one thread, and the call sites that write a change
take the record from it explicitly (`pending_record`) and hand it to their store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

SUCCEEDED = "succeeded"
DEFAULT_RETENTION_DAYS = 90
DAY_MS = 86_400_000


class PrincipalKind(StrEnum):
    TENANT_KEY = "tenant-key"
    ADMIN = "admin"
    SANDBOX_KEY = "sandbox-key"
    REPO_TOKEN = "repo-token"
    ANONYMOUS = "anonymous"  # refused before any credential was verified
    SYSTEM = "system"  # the platform's own periodic work (garbage collection)


class AuditRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Time-ordered: `<time ms:013d>-<random>`, so ordering by id orders by time.
    id: str
    time_ms: int
    access_key_id: str
    principal: PrincipalKind
    tenant: str  # the tenant the change is about ("" for none)
    action: str
    resource: str
    outcome: str = SUCCEEDED  # or the error code
    source_address: str = ""


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str | None = None
    action: str | None = None
    resource_prefix: str | None = None
    outcome: str | None = None
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive
    before_id: str | None = None  # the page cursor: records older than this id
    limit: int = Field(default=50, ge=1, le=1000)

    def matches(self, record: AuditRecord) -> bool:
        """The filters, for backends that apply them after reading."""
        return (
            (self.tenant is None or record.tenant == self.tenant)
            and (self.action is None or record.action == self.action)
            and (self.outcome is None or record.outcome == self.outcome)
            and (self.resource_prefix is None or record.resource.startswith(self.resource_prefix))
            and (self.since_ms is None or record.time_ms >= self.since_ms)
            and (self.until_ms is None or record.time_ms < self.until_ms)
            and (self.before_id is None or record.id < self.before_id)
        )


class AuditPage(BaseModel):
    records: list[AuditRecord]
    next_cursor: str | None = None  # the `before_id` of the next page


class AuditLog(Protocol):
    """Reads every record and appends those of refused calls (no change to join)."""

    def append(self, record: AuditRecord) -> None: ...

    def query(self, query: AuditQuery) -> AuditPage:
        """Newest first."""

    def purge(self, before_ms: int) -> int:
        """Remove records older than `before_ms` (retention); how many went."""


def record_id(time_ms: int, suffix: str) -> str:
    return f"{time_ms:013d}-{suffix}"


@dataclass
class AuditScope:
    """A mutating request in progress: who, from where, which action."""

    id: str
    time_ms: int
    access_key_id: str
    principal: PrincipalKind
    tenant: str
    action: str
    resource: str
    source_address: str
    joined: bool = False  # a store was handed the record to write with the change
    # Fills in who and which tenant once the caller is verified (the API layer's).
    identify: Callable[[AuditScope], None] | None = None

    def record(self, outcome: str = SUCCEEDED) -> AuditRecord:
        return AuditRecord(
            id=self.id,
            time_ms=self.time_ms,
            access_key_id=self.access_key_id,
            principal=self.principal,
            tenant=self.tenant,
            action=self.action,
            resource=self.resource,
            outcome=outcome,
            source_address=self.source_address,
        )


_current: ContextVar[AuditScope | None] = ContextVar("treadle_audit_scope", default=None)


@contextmanager
def audit_scope(scope: AuditScope) -> Iterator[AuditScope]:
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def current_scope() -> AuditScope | None:
    return _current.get()


def pending_record(
    *, resource: str | None = None, tenant: str | None = None, action: str | None = None
) -> AuditRecord | None:
    """The success record of the current request's change, for its store to write in
    the same transaction; None outside a request (internal work is not audited here).

    `resource`/`tenant` name what the use case knows better than the path (an ARN, the
    id of the tenant just created); `action` refines the route's (a Publish in a call).
    One request, one record: the second caller gets None.
    """
    scope = _current.get()
    if scope is None or scope.joined:
        return None
    if scope.identify is not None:
        scope.identify(scope)
    if resource is not None:
        scope.resource = resource
    if tenant is not None:
        scope.tenant = tenant
    if action is not None:
        scope.action = action
    scope.joined = True
    return scope.record()
