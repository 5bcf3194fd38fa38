"""`TenantStore` over its own SQLite file.

The file holds access-key secrets in plain text (SigV4 needs them to recompute
signatures), so it is created with mode 0600 and re-chmodded on open; SQLite gives its
`-wal` and `-shm` files the database file's mode. Each write is one `BEGIN IMMEDIATE`
transaction (`SqliteFile.transaction`): it takes the write lock before reading, so
checks (key is active, account id is free) and changes cannot interleave with another
writer, thread or process.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from treadle.adapters.sqlite.audit import AUDIT_SCHEMA, insert_audit
from treadle.adapters.sqlite.connection import SqliteFile
from treadle.domain.audit import AuditRecord
from treadle.domain.errors import Conflict, NotFound
from treadle.tenancy.models import EGRESS, AccessKey, Egress, KeyStatus, Quotas, Tenant
from treadle.tenancy.stores import IdTaken, TenantStoreBase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    account_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    quotas TEXT NOT NULL,
    egress TEXT NOT NULL DEFAULT '"none"'
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_keys (
    access_key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(account_id),
    secret TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS access_keys_by_tenant ON access_keys (tenant, created_ms);
"""

_TENANT_COLS = "t.account_id, t.name, t.created_ms, t.disabled, t.quotas, t.egress"
_KEY_COLS = "k.access_key_id, k.tenant, k.secret, k.status, k.created_ms"

T = TypeVar("T")


def _tenant(row: Sequence[Any]) -> Tenant:
    account_id, name, created_ms, disabled, quotas, egress = row
    return Tenant(
        account_id=str(account_id),
        name=str(name),
        created_ms=int(created_ms),
        disabled=bool(disabled),
        quotas=Quotas.model_validate_json(str(quotas)),
        egress=EGRESS.validate_json(str(egress)),
    )


def _add_egress(conn: sqlite3.Connection) -> None:
    # Files made before the column existed: their tenants read as "none", the default.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tenants)")}
    if "egress" not in columns:
        conn.execute("""ALTER TABLE tenants ADD COLUMN egress TEXT NOT NULL DEFAULT '"none"'""")


def _key(row: Sequence[Any]) -> AccessKey:
    key_id, tenant, secret, status, created_ms = row
    return AccessKey(
        access_key_id=str(key_id),
        tenant=str(tenant),
        secret=SecretStr(str(secret)),
        status=KeyStatus(str(status)),
        created_ms=int(created_ms),
    )


def _private_file(path: Path) -> None:
    # Create owner-only before SQLite opens it, so the secrets are never world-readable,
    # even for an instant; chmod also tightens a file an older version left wider.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class SqliteTenantStore(TenantStoreBase):
    def __init__(self, path: Path, *, sole_writer: bool = False) -> None:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        _private_file(path)
        self._db = SqliteFile(path, schema=_SCHEMA + AUDIT_SCHEMA)
        with self._db.transaction() as conn:
            _add_egress(conn)
        # Every authenticated request reads its key and tenant; they change rarely, so
        # reads are served from memory, filled under the lock and emptied by every write
        # made here. Misses are not kept: unknown key ids sent by anyone must not grow
        # the cache. The caches are also emptied whenever another process wrote the file
        # (a second server process, a restore, an operator's sqlite3): `PRAGMA
        # data_version` moves with every commit of another connection and costs no I/O,
        # so a key revoked there stops working here at once, not at a restart.
        # `sole_writer` (one server process, holding the data directory's lock): every
        # write is this store's own, so the check is skipped; it was a statement per
        # look-up, three look-ups per Invoke.
        self._sole_writer = sole_writer
        self._tenant_cache: dict[str, Tenant] = {}
        self._key_cache: dict[str, tuple[AccessKey, Tenant]] = {}
        self._data_version: int | None = None
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._db.transaction() as conn:
            # Emptied under the lock, which readers need to refill: not before commit.
            self._tenant_cache.clear()
            self._key_cache.clear()
            yield conn

    def _sync(self, conn: sqlite3.Connection) -> None:
        """Under the lock: forget what was cached if another process wrote meanwhile."""
        if self._sole_writer:
            return
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._tenant_cache.clear()
            self._key_cache.clear()
            self._data_version = version

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._db.locked() as conn:
            return fn(conn)

    # -- tenants ------------------------------------------------------------------

    @property
    def file(self) -> SqliteFile:
        """The file, for the audit log reader (its `audit` table)."""
        return self._db

    def _insert_tenant(
        self, tenant: Tenant, access: AccessKey | None, audit: AuditRecord | None
    ) -> None:
        with self._write() as conn:
            insert_audit(conn, audit)
            if self._tenant_row(conn, tenant.account_id) is not None:
                raise IdTaken("tenant")
            conn.execute(
                "INSERT INTO tenants VALUES (?, ?, ?, 0, ?, ?)",
                (
                    tenant.account_id,
                    tenant.name,
                    tenant.created_ms,
                    tenant.quotas.model_dump_json(),
                    EGRESS.dump_json(tenant.egress).decode(),
                ),
            )
            if access is not None:
                self._write_key(conn, access)

    @staticmethod
    def _write_key(conn: sqlite3.Connection, access: AccessKey) -> None:
        taken = conn.execute(
            "SELECT 1 FROM access_keys WHERE access_key_id = ?", (access.access_key_id,)
        ).fetchone()
        if taken is not None:
            raise IdTaken("key")
        conn.execute(
            "INSERT INTO access_keys VALUES (?, ?, ?, ?, ?)",
            (
                access.access_key_id,
                access.tenant,
                access.secret.get_secret_value(),
                access.status.value,
                access.created_ms,
            ),
        )

    def _tenant_row(self, conn: sqlite3.Connection, account_id: str) -> Tenant | None:
        row = conn.execute(
            f"SELECT {_TENANT_COLS} FROM tenants t WHERE t.account_id = ?", (account_id,)
        ).fetchone()
        return None if row is None else _tenant(row)

    def _require_tenant(self, conn: sqlite3.Connection, account_id: str) -> Tenant:
        tenant = self._tenant_row(conn, account_id)
        if tenant is None:
            raise NotFound(f"Tenant not found: {account_id}")
        return tenant

    def get_tenant(self, account_id: str) -> Tenant:
        with self._db.locked() as conn:
            self._sync(conn)
            cached = self._tenant_cache.get(account_id)
            if cached is not None:
                return cached
            tenant = self._require_tenant(conn, account_id)
            self._tenant_cache[account_id] = tenant
        return tenant

    def list_tenants(
        self, marker: str | None = None, limit: int = 100
    ) -> tuple[list[Tenant], str | None]:
        limit = max(1, min(limit, 1000))
        rows = self._read(
            lambda conn: conn.execute(
                f"SELECT {_TENANT_COLS} FROM tenants t WHERE t.account_id > ? "
                "ORDER BY t.account_id LIMIT ?",
                (marker or "", limit + 1),
            ).fetchall()
        )
        tenants = [_tenant(r) for r in rows[:limit]]
        return tenants, (tenants[-1].account_id if len(rows) > limit else None)

    def set_tenant_disabled(
        self, account_id: str, disabled: bool, *, audit: AuditRecord | None = None
    ) -> Tenant:
        with self._write() as conn:
            tenant = self._require_tenant(conn, account_id)
            insert_audit(conn, audit)
            conn.execute(
                "UPDATE tenants SET disabled = ? WHERE account_id = ?",
                (int(disabled), account_id),
            )
            return tenant.model_copy(update={"disabled": disabled})

    def update_quotas(
        self, account_id: str, quotas: Quotas, *, audit: AuditRecord | None = None
    ) -> Tenant:
        with self._write() as conn:
            tenant = self._require_tenant(conn, account_id)
            insert_audit(conn, audit)
            conn.execute(
                "UPDATE tenants SET quotas = ? WHERE account_id = ?",
                (quotas.model_dump_json(), account_id),
            )
            return tenant.model_copy(update={"quotas": quotas})

    def update_egress(
        self, account_id: str, egress: Egress, *, audit: AuditRecord | None = None
    ) -> Tenant:
        with self._write() as conn:
            tenant = self._require_tenant(conn, account_id)
            insert_audit(conn, audit)
            conn.execute(
                "UPDATE tenants SET egress = ? WHERE account_id = ?",
                (EGRESS.dump_json(egress).decode(), account_id),
            )
            return tenant.model_copy(update={"egress": egress})

    # -- keys -----------------------------------------------------------------------

    def _owned_key(self, conn: sqlite3.Connection, account_id: str, key_id: str) -> AccessKey:
        row = conn.execute(
            f"SELECT {_KEY_COLS} FROM access_keys k WHERE k.access_key_id = ? AND k.tenant = ?",
            (key_id, account_id),
        ).fetchone()
        if row is None:
            # The same answer whether the key is absent or another tenant's.
            raise NotFound(f"Access key not found: {key_id}")
        return _key(row)

    def _insert_key(self, access: AccessKey, audit: AuditRecord | None) -> None:
        with self._write() as conn:
            self._require_tenant(conn, access.tenant)
            insert_audit(conn, audit)
            self._write_key(conn, access)

    def list_keys(self, account_id: str) -> list[AccessKey]:
        def run(conn: sqlite3.Connection) -> list[AccessKey]:
            self._require_tenant(conn, account_id)
            rows = conn.execute(
                f"SELECT {_KEY_COLS} FROM access_keys k WHERE k.tenant = ? "
                "ORDER BY k.created_ms, k.access_key_id",
                (account_id,),
            ).fetchall()
            return [_key(r) for r in rows]

        return self._read(run)

    def set_key_status(
        self,
        account_id: str,
        access_key_id: str,
        status: KeyStatus,
        *,
        audit: AuditRecord | None = None,
    ) -> AccessKey:
        with self._write() as conn:
            key = self._owned_key(conn, account_id, access_key_id)
            insert_audit(conn, audit)
            conn.execute(
                "UPDATE access_keys SET status = ? WHERE access_key_id = ?",
                (status.value, access_key_id),
            )
            return key.model_copy(update={"status": status})

    def _replace_key(self, old_key_id: str, access: AccessKey, audit: AuditRecord | None) -> None:
        with self._write() as conn:
            old = self._owned_key(conn, access.tenant, old_key_id)
            if not old.active:
                raise Conflict(f"Access key {old_key_id} is not active; it cannot be rotated.")
            insert_audit(conn, audit)
            conn.execute(
                "UPDATE access_keys SET status = ? WHERE access_key_id = ?",
                (KeyStatus.INACTIVE.value, old_key_id),
            )
            self._write_key(conn, access)

    def find_key(self, access_key_id: str) -> tuple[AccessKey, Tenant] | None:
        with self._db.locked() as conn:
            self._sync(conn)
            cached = self._key_cache.get(access_key_id)
            if cached is not None:
                return cached
            row = conn.execute(
                f"SELECT {_KEY_COLS}, {_TENANT_COLS} FROM access_keys k "
                "JOIN tenants t ON t.account_id = k.tenant WHERE k.access_key_id = ?",
                (access_key_id,),
            ).fetchone()
            if row is None:
                return None
            found = _key(row[:5]), _tenant(row[5:])
            self._key_cache[access_key_id] = found
        return found
