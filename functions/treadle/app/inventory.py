"""The platform admin's inventory (`GET /v1/admin/inventory`): every dynamic resource of
every tenant (function versions, repositories, facets, executions) with its size, when
it was made and when it was last used, page by page.

It walks tenants in account order and, within one, the kinds in `KINDS` order, each
through its store's own listing, so a page costs a bounded number of store reads
(`MAX_READS`); an idle filter that skips most resources returns a short page with a
marker rather than reading on. Last uses come from the `LastUsedStore` (to the minute),
executions' from their own record.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass

from treadle.artifacts.ports import RefStore
from treadle.domain.errors import InvalidParameter, NotFound
from treadle.domain.ports import (
    Clock,
    ExecutionQuery,
    ExecutionStore,
    FunctionStore,
    FunctionVersion,
    LastUsedStore,
)
from treadle.domain.usage import EXECUTION, FACET, FUNCTION_VERSION, KINDS, REPOSITORY
from treadle.facets.ports import FacetStore
from treadle.tenancy.admin import TenantAdmin

DAY_MS = 86_400_000
MAX_READS = 50  # store listings per page at most
_TENANT_PAGE = 100


@dataclass(frozen=True)
class Resource:
    kind: str
    tenant: str
    id: str  # "name:version", a repository or facet name, an execution ARN
    size_bytes: int | None  # None: not known for this kind (repositories, for now)
    created_ms: int | None
    last_used_ms: int | None  # None: never used since last uses were recorded

    def idle_since(self) -> int:
        return self.last_used_ms or self.created_ms or 0


Page = tuple[list[Resource], str | None]  # resources, the kind's own marker for the next


@dataclass(frozen=True)
class _Cursor:
    tenant: str
    kind: str
    inner: str | None

    def encode(self) -> str:
        raw = json.dumps([self.tenant, self.kind, self.inner]).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def decode(marker: str) -> _Cursor:
        try:
            tenant, kind, inner = json.loads(base64.urlsafe_b64decode(marker.encode()))
            if not isinstance(tenant, str) or kind not in KINDS:
                raise ValueError
            if inner is not None and not isinstance(inner, str):
                raise ValueError
            return _Cursor(tenant, kind, inner)
        except (ValueError, TypeError):
            raise InvalidParameter(f"Invalid marker {marker!r}.") from None


class InventoryService:
    def __init__(
        self,
        *,
        tenants: TenantAdmin,
        functions: FunctionStore,
        refs: RefStore,
        facets: FacetStore,
        executions: ExecutionStore,
        last_used: LastUsedStore,
        clock: Clock,
    ) -> None:
        self._tenants = tenants
        self._functions = functions
        self._refs = refs
        self._facets = facets
        self._executions = executions
        self._last_used = last_used
        self._clock = clock
        self._pagers: dict[str, Callable[[str, str | None, int], Page]] = {
            FUNCTION_VERSION: self._versions,
            REPOSITORY: self._repositories,
            FACET: self._facet_page,
            EXECUTION: self._execution_page,
        }

    def page(
        self,
        *,
        tenant: str | None = None,
        kind: str | None = None,
        idle_days: int | None = None,
        limit: int = 100,
        marker: str | None = None,
    ) -> tuple[list[Resource], str | None]:
        if kind is not None and kind not in KINDS:
            raise InvalidParameter(f"kind must be one of {', '.join(KINDS)}, not {kind!r}.")
        if tenant is not None:
            self._tenants.get_tenant(tenant)  # NotFound for no such tenant
        kinds = [kind] if kind else list(KINDS)
        cutoff = None if idle_days is None else self._clock.now_ms() - idle_days * DAY_MS
        cursor = _Cursor.decode(marker) if marker else self._first(tenant, kinds[0])
        if cursor is None:
            return [], None
        if (tenant is not None and cursor.tenant != tenant) or cursor.kind not in kinds:
            raise InvalidParameter("The marker belongs to another query.")
        out: list[Resource] = []
        for _ in range(MAX_READS):
            found, inner = self._pagers[cursor.kind](cursor.tenant, cursor.inner, limit - len(out))
            out.extend(r for r in found if cutoff is None or r.idle_since() < cutoff)
            if inner is not None:
                cursor = _Cursor(cursor.tenant, cursor.kind, inner)
            else:
                following = self._after(cursor, kinds, single_tenant=tenant is not None)
                if following is None:
                    return out, None
                cursor = following
            if len(out) >= limit:
                break
        return out, cursor.encode()

    def _first(self, tenant: str | None, kind: str) -> _Cursor | None:
        if tenant is not None:
            return _Cursor(tenant, kind, None)
        tenants, _ = self._tenants.list_tenants(None, 1)
        return _Cursor(tenants[0].account_id, kind, None) if tenants else None

    def _after(self, cursor: _Cursor, kinds: list[str], *, single_tenant: bool) -> _Cursor | None:
        """The next kind of this tenant, else the first kind of the next tenant."""
        at = kinds.index(cursor.kind)
        if at + 1 < len(kinds):
            return _Cursor(cursor.tenant, kinds[at + 1], None)
        if single_tenant:
            return None
        tenants, _ = self._tenants.list_tenants(cursor.tenant, 1)
        return _Cursor(tenants[0].account_id, kinds[0], None) if tenants else None

    # -- one page of one kind of one tenant ---------------------------------------------

    def _versions(self, tenant: str, inner: str | None, limit: int) -> Page:
        """Every version of every function, bounded by the tenant's maxFunctions and
        what it published; the marker is how many were returned before."""
        used = self._last_used.last_used(tenant, FUNCTION_VERSION)
        every: list[Resource] = []
        marker: str | None = None
        while True:
            latest, marker = self._functions.list_latest(tenant, marker, 1000)
            for fn in latest:
                versions = self._all_versions(tenant, fn.function_name)
                every.extend(
                    Resource(
                        FUNCTION_VERSION,
                        tenant,
                        f"{v.function_name}:{v.version}",
                        v.code_size,
                        v.last_modified_ms,
                        used.get(f"{v.function_name}:{v.version}"),
                    )
                    for v in versions
                )
            if not marker:
                break
        start = _offset(inner)
        end = start + limit
        return every[start:end], (str(end) if end < len(every) else None)

    def _all_versions(self, tenant: str, name: str) -> list[FunctionVersion]:
        found: list[FunctionVersion] = []
        marker: str | None = None
        while True:
            try:
                versions, marker = self._functions.list_versions(tenant, name, marker, 1000)
            except NotFound:  # deleted meanwhile
                return found
            found.extend(versions)
            if not marker:
                return found

    def _repositories(self, tenant: str, inner: str | None, limit: int) -> Page:
        page = self._refs.list_repos(tenant, limit=limit, after=inner)
        used = self._last_used.last_used(tenant, REPOSITORY) if page.names else {}
        now = self._clock.now_ms()
        for name in page.names:
            if name not in used:
                # No creation time is kept for a repository: one never used (or made
                # before uses were recorded) is idle from when the inventory first saw it.
                self._last_used.touch(tenant, REPOSITORY, name, now)
                used[name] = now
        found = [Resource(REPOSITORY, tenant, n, None, None, used[n]) for n in page.names]
        return found, page.next_marker

    def _facet_page(self, tenant: str, inner: str | None, limit: int) -> Page:
        facets = sorted(
            (f for f in self._facets.list(tenant) if inner is None or f.name > inner),
            key=lambda f: f.name,
        )
        used = self._last_used.last_used(tenant, FACET) if facets else {}
        found = [
            # The filesystem's last write, or the last open we saw, whichever is later.
            Resource(
                FACET, tenant, f.name, f.size_bytes, None, max(f.last_used_ms, used.get(f.name, 0))
            )
            for f in facets[:limit]
        ]
        return found, (found[-1].id if len(facets) > limit else None)

    def _execution_page(self, tenant: str, inner: str | None, limit: int) -> Page:
        """Executions function by function (an execution of a deleted function is not
        listed); the marker is [function, the execution store's marker within it]."""
        if inner:
            name, within = _pair(inner)
        else:
            first, _ = self._functions.list_latest(tenant, None, 1)
            if not first:
                return [], None
            name, within = first[0].function_name, None
        runs, next_within = self._executions.list_executions(
            tenant, name, ExecutionQuery(marker=within, limit=limit)
        )
        found = [
            Resource(
                EXECUTION,
                tenant,
                ex.arn,
                ex.history_bytes,
                ex.start_ms,
                max(ex.start_ms, ex.end_ms or 0, ex.status_changed_ms, ex.invocation_start_ms or 0),
            )
            for ex in runs
        ]
        if next_within is not None:
            return found, json.dumps([name, next_within])
        following, _ = self._functions.list_latest(tenant, name, 1)
        return found, (json.dumps([following[0].function_name, None]) if following else None)


def _pair(inner: str) -> tuple[str, str | None]:
    try:
        name, within = json.loads(inner)
        if isinstance(name, str) and (within is None or isinstance(within, str)):
            return name, within
    except (ValueError, TypeError):
        pass
    raise InvalidParameter(f"Invalid marker {inner!r}.")


def _offset(inner: str | None) -> int:
    try:
        return int(inner) if inner else 0
    except ValueError:
        raise InvalidParameter(f"Invalid marker {inner!r}.") from None
