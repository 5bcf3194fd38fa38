"""Facet use cases: a worker opening one (made on first use, within the quotas), and the
control plane's list, export and delete. Callers pass the tenant their credentials
proved; nothing here takes a tenant from the request body."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from treadle.domain.errors import NotFound
from treadle.facets.models import FacetGrant, FacetInfo, check_name
from treadle.facets.ports import FacetStore
from treadle.tenancy.admin import TenantAdmin
from treadle.tenancy.errors import ServiceQuotaExceeded

log = logging.getLogger(__name__)

# A facet within its quota holds its database (<= maxFacetBytes) and a write-ahead log
# checkpointed at about as much (`treadle_facets.connect`): more is a bypass.
OVER_QUOTA_FACTOR = 2
LOG_SLACK_BYTES = 1 << 20


class Facets:
    def __init__(
        self,
        store: FacetStore,
        tenants: TenantAdmin,
        used: Callable[[str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._tenants = tenants
        # Told of each open (tenant, name): the inventory's last use.
        self._used = used
        # Count-then-create is one step per tenant: two first uses at once must not
        # both pass the facets-per-tenant quota.
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)

    def open(self, tenant: str, name: str) -> FacetGrant:
        """A worker of `tenant` asks to open `name`: made on first use."""
        check_name(name)
        quotas = self._tenants.get_tenant(tenant).quotas
        if not self._store.exists(tenant, name):
            with self._locks[tenant]:
                if not self._store.exists(tenant, name):
                    if self._store.count(tenant) + 1 > quotas.max_facets:
                        raise ServiceQuotaExceeded(
                            f"Creating facet {name!r} would exceed the tenant's quota of "
                            f"{quotas.max_facets} facets."
                        )
                    self._check_sizes(tenant, quotas.max_facet_bytes)
                    if self._store.create(tenant, name):
                        log.info("facet %s of %s created", name, tenant)
        if self._used is not None:
            self._used(tenant, name)
        return FacetGrant(name=name, max_bytes=quotas.max_facet_bytes)

    def _check_sizes(self, tenant: str, max_bytes: int) -> None:
        """Measure and refuse: code that bypasses `treadle_facets` (opens the file itself
        and raises max_page_count) can grow a facet past its quota; the tenant then
        makes no new facet until it shrinks (docs/facets.md says what else bounds it)."""
        limit = max_bytes * OVER_QUOTA_FACTOR + LOG_SLACK_BYTES
        for facet in self._store.list(tenant):
            if facet.size_bytes > limit:
                raise ServiceQuotaExceeded(
                    f"Facet {facet.name!r} holds {facet.size_bytes} bytes, over the "
                    f"tenant's maxFacetBytes ({max_bytes}): no new facet until it shrinks."
                )

    def listing(self, tenant: str) -> list[FacetInfo]:
        return self._store.list(tenant)

    def listing_of(self, account_id: str) -> list[FacetInfo]:
        """The admin's view of one tenant's facets (NotFound for no such tenant)."""
        self._tenants.get_tenant(account_id)
        return self._store.list(account_id)

    def export(self, tenant: str, name: str) -> bytes:
        return self._store.export(tenant, check_name(name))

    def delete(self, tenant: str, name: str) -> None:
        if not self._store.delete(tenant, check_name(name)):
            raise NotFound(f"Facet not found: {name}")
