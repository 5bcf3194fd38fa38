"""The tenant store of a sole writer (one server process): a cached key or tenant is
served without a statement, and a key switched off here is refused at the next look.

Several processes check `PRAGMA data_version` at each look instead (the shared
contract's "sqlite-processes"); every behaviour of the store runs in this mode too
("sqlite-sole-writer" in `tests/contract/test_tenant_store.py`).
"""

from __future__ import annotations

from pathlib import Path

from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.tenancy.models import KeyStatus

NOW = 1_700_000_000_000


def test_cached_looks_run_no_statement(tmp_path: Path) -> None:
    store = SqliteTenantStore(tmp_path / "tenants.db", sole_writer=True)
    tenant, key = store.create_tenant_with_key("acme", now_ms=NOW)
    store.get_tenant(tenant.account_id)
    store.find_key(key.access_key_id)
    statements: list[str] = []
    with store.file.locked() as conn:
        conn.set_trace_callback(statements.append)
    for _ in range(5):
        assert store.get_tenant(tenant.account_id).name == "acme"
        found = store.find_key(key.access_key_id)
        assert found is not None and found[0].status is KeyStatus.ACTIVE
    assert statements == []
    store.close()


def test_a_key_switched_off_is_refused_at_the_next_look(tmp_path: Path) -> None:
    store = SqliteTenantStore(tmp_path / "tenants.db", sole_writer=True)
    tenant, key = store.create_tenant_with_key("acme", now_ms=NOW)
    found = store.find_key(key.access_key_id)  # cached
    assert found is not None and found[0].status is KeyStatus.ACTIVE
    store.set_key_status(tenant.account_id, key.access_key_id, KeyStatus.INACTIVE)
    found = store.find_key(key.access_key_id)
    assert found is not None and found[0].status is KeyStatus.INACTIVE
    store.close()
