"""The facet use cases over the embedded store: made on first use within the tenant's
quotas, concurrent first uses counted once, and measure-and-refuse of a facet grown past
its quota by code that bypassed `treadle_facets`."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from support.fakes import ManualClock
from treadle.adapters.sqlite.facets import DB, SqliteFacetStore
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.domain.errors import InvalidParameter, NotFound
from treadle.facets import Facets
from treadle.tenancy.admin import TenantAdmin
from treadle.tenancy.errors import ServiceQuotaExceeded
from treadle.tenancy.models import Quotas

World = tuple[Facets, SqliteFacetStore, str]


@pytest.fixture
def world(tmp_path: Path) -> World:
    admin = TenantAdmin(SqliteTenantStore(tmp_path / "tenants.db"), ManualClock())
    tenant, _ = admin.create_tenant("a", quotas=Quotas(max_facets=3, max_facet_bytes=65536))
    store = SqliteFacetStore(tmp_path / "facets")
    return Facets(store, admin), store, tenant.account_id


def test_open_makes_the_facet_and_grants_the_byte_quota(world: World) -> None:
    facets, _, tenant = world
    grant = facets.open(tenant, "orders")
    assert (grant.name, grant.max_bytes) == ("orders", 65536)
    assert [f.name for f in facets.listing(tenant)] == ["orders"]
    assert facets.open(tenant, "orders") == grant  # opening again makes nothing


def test_concurrent_first_uses_cannot_pass_the_facet_quota_together(world: World) -> None:
    facets, store, tenant = world
    refused: list[str] = []

    def first_use(name: str) -> None:
        try:
            facets.open(tenant, name)
        except ServiceQuotaExceeded:
            refused.append(name)

    threads = [threading.Thread(target=first_use, args=(f"f{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count(tenant) == 3 and len(refused) == 5


def test_a_facet_grown_past_its_quota_blocks_new_facets(world: World) -> None:
    facets, store, tenant = world
    facets.open(tenant, "orders")
    # What a bypass does: grow the file itself, beyond max_page_count.
    with (store.tenant_dir(tenant) / "orders" / DB).open("ab") as f:
        f.truncate(4 << 20)
    with pytest.raises(ServiceQuotaExceeded, match="'orders' holds"):
        facets.open(tenant, "more")
    facets.open(tenant, "orders")  # the facet itself still opens


def test_unknown_or_bad_names_are_precise_errors(world: World) -> None:
    facets, _, tenant = world
    with pytest.raises(NotFound):
        facets.delete(tenant, "nothing")
    with pytest.raises(InvalidParameter):
        facets.open(tenant, "../etc")
    with pytest.raises(NotFound):
        facets.listing_of("999999999999")
