"""Single-tenant mode: where the host cannot isolate tenants, a second one is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fakes import ManualClock
from treadle.adapters.sandbox.identity import Confinement
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.api.errors import classify
from treadle.tenancy.admin import TenantAdmin
from treadle.tenancy.errors import SingleTenantMode


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[TenantAdmin]:
    store = SqliteTenantStore(tmp_path / "tenants.sqlite")
    yield TenantAdmin(store, ManualClock())
    store.close()


def test_the_first_tenant_is_created_and_a_second_refused_with_the_reason(
    admin: TenantAdmin,
) -> None:
    admin.keep_to_one_tenant("no mount namespaces here")
    first, _ = admin.create_tenant("dev", account_id="123456789012")
    with pytest.raises(SingleTenantMode) as refused:
        admin.create_tenant("other")
    assert "no mount namespaces here" in refused.value.message
    assert "--insecure-multi-tenant" in refused.value.message
    assert [t.account_id for t in admin.list_tenants()[0]] == [first.account_id]
    assert classify(refused.value)[:2] == (409, "ResourceConflictException")


def test_without_the_restriction_tenants_are_created_freely(admin: TenantAdmin) -> None:
    admin.create_tenant("a")
    admin.create_tenant("b")
    assert len(admin.list_tenants()[0]) == 2


@pytest.mark.parametrize(
    ("privileged", "caps", "complaint"),
    [
        (False, {"landlock": 3}, "does not run as root"),
        (True, {"root": True, "mount_ns": False}, "no mount namespaces"),
        (True, {"root": True, "mount_ns": True}, None),
    ],
)
def test_the_sandbox_says_what_keeps_tenants_apart_or_not(
    tmp_path: Path, privileged: bool, caps: dict[str, object], complaint: str | None
) -> None:
    confinement = Confinement(tmp_path / "sandbox", tmp_path, privileged)
    found = confinement.shortcomings(caps)
    if complaint is None:
        assert found == []
    else:
        assert len(found) == 1 and complaint in found[0]
