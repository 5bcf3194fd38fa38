"""Garbage collection: which of a tenant's resources its policy lets go, and why.

Pure planning. The collector (`app/gc.py`) gathers what the stores hold, asks `plan`
what may go, and removes each planned resource through its store's own delete, which
re-checks the one condition a plan read can race with (a version or function pinned by
a live execution) in the delete's own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from treadle.domain.ports import FunctionVersion

DAY_MS = 86_400_000


class GcPolicy(BaseModel):
    """What garbage collection may remove of a tenant's resources.

    Every field is optional: unset, that kind of resource is never collected. Days are
    whole days without a recorded use (`GET /v1/admin/inventory`'s `lastUsed`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_versions: int | None = Field(default=None, ge=0, le=10_000)
    idle_repo_days: int | None = Field(default=None, ge=1, le=36_500)
    idle_facet_days: int | None = Field(default=None, ge=1, le=36_500)
    idle_function_days: int | None = Field(default=None, ge=1, le=36_500)

    @property
    def empty(self) -> bool:
        return all(
            v is None
            for v in (
                self.keep_versions,
                self.idle_repo_days,
                self.idle_facet_days,
                self.idle_function_days,
            )
        )


class GcKind(StrEnum):
    FUNCTION_VERSION = "functionVersion"
    FUNCTION = "function"
    REPOSITORY = "repository"
    FACET = "facet"
    GIT_OBJECTS = "gitObjects"  # a repository's objects no ref reaches
    CODE_PACKAGE = "codePackage"  # a code zip no version references (platform-wide)


@dataclass(frozen=True)
class Removal:
    kind: GcKind
    resource: str  # "name:3", a function, repository or facet name, a blob key
    size_bytes: int | None  # None: not known (a repository's own objects)
    reason: str


@dataclass(frozen=True)
class FunctionState:
    """One function as the stores hold it when the plan is made."""

    latest: FunctionVersion
    versions: Sequence[FunctionVersion]  # published, any order
    aliased: frozenset[str]  # versions an alias names
    pins: Mapping[str, int]  # version -> live executions pinned to it
    last_used: Mapping[str, int] = field(default_factory=dict)  # version -> epoch ms

    @property
    def name(self) -> str:
        return self.latest.function_name

    def last_activity_ms(self) -> int:
        """Its latest use or change: the newest of any version's use and $LATEST's edit."""
        return max([self.latest.last_modified_ms, *self.last_used.values()])


@dataclass(frozen=True)
class IdleResource:
    name: str
    size_bytes: int | None
    idle_since_ms: int  # its last use, else when it was made or first seen


def plan_functions(
    policy: GcPolicy, functions: Iterable[FunctionState], now_ms: int
) -> list[Removal]:
    """Idle functions first; of the others, the versions beyond the newest `keep_versions`.

    Never $LATEST on its own, never a version an alias names, never one or a function a
    live execution is pinned to (the delete checks that again, in its transaction).
    """
    out: list[Removal] = []
    for fn in functions:
        if _idle_function(policy, fn, now_ms):
            size = fn.latest.code_size + sum(v.code_size for v in fn.versions)
            days = policy.idle_function_days
            out.append(Removal(GcKind.FUNCTION, fn.name, size, f"idle for over {days} days"))
            continue
        if policy.keep_versions is None:
            continue
        newest_first = sorted(fn.versions, key=lambda v: int(v.version), reverse=True)
        for v in newest_first[policy.keep_versions :]:
            if v.version in fn.aliased or fn.pins.get(v.version, 0) > 0:
                continue
            out.append(
                Removal(
                    GcKind.FUNCTION_VERSION,
                    f"{fn.name}:{v.version}",
                    v.code_size,
                    f"beyond the newest {policy.keep_versions} versions",
                )
            )
    return out


def _idle_function(policy: GcPolicy, fn: FunctionState, now_ms: int) -> bool:
    days = policy.idle_function_days
    if days is None or any(n > 0 for n in fn.pins.values()):
        return False
    return fn.last_activity_ms() < now_ms - days * DAY_MS


def plan_idle(
    kind: GcKind, days: int | None, resources: Iterable[IdleResource], now_ms: int
) -> list[Removal]:
    """Repositories or facets not used for more than `days` days (None: keep all)."""
    if days is None:
        return []
    cutoff = now_ms - days * DAY_MS
    return [
        Removal(kind, r.name, r.size_bytes, f"idle for over {days} days")
        for r in resources
        if r.idle_since_ms < cutoff
    ]
