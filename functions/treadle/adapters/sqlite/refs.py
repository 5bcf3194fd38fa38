"""`RefStore` over its own SQLite file: the embedded stand-in for DynamoDB.

Each compare-and-swap is one `BEGIN IMMEDIATE` transaction (`SqliteFile.transaction`):
it takes SQLite's write lock before reading the current values, so no other writer
(thread or process) can move a ref between the comparison and the swap.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from treadle.adapters.sqlite.audit import AUDIT_SCHEMA, insert_audit
from treadle.adapters.sqlite.connection import SqliteFile
from treadle.artifacts.ports import (
    RefConflict,
    RefUpdate,
    RepoAlreadyExists,
    RepoNotFound,
    RepoPage,
    check_initial_refs,
    check_updates,
    is_zero,
)
from treadle.domain.audit import AuditRecord
from treadle.domain.errors import InvalidParameter
from treadle.failpoints import Kind, boundary

_SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refs (
    tenant TEXT NOT NULL,
    repo TEXT NOT NULL,
    ref BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (tenant, repo, ref)
) WITHOUT ROWID;
-- A tenant's repositories, counted by triggers in the transaction of each create and
-- delete (its usage). A tenant with repositories and no row is one from before the
-- counter: counted once here, at open (later opens find the row and add nothing).
CREATE TABLE IF NOT EXISTS repo_counts (
    tenant TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO repo_counts (tenant, n) SELECT tenant, COUNT(*) FROM repos GROUP BY tenant;
CREATE TRIGGER IF NOT EXISTS repo_counts_insert AFTER INSERT ON repos
BEGIN
    INSERT INTO repo_counts (tenant, n) VALUES (NEW.tenant, 1)
    ON CONFLICT (tenant) DO UPDATE SET n = n + 1;
END;
-- A tenant's repository bytes (packs and indexes), moved after each pack is stored or
-- removed: coarse, the objects live outside this file (docs/operating.md).
CREATE TABLE IF NOT EXISTS repo_bytes (
    tenant TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS repo_counts_delete AFTER DELETE ON repos
BEGIN
    UPDATE repo_counts SET n = n - 1 WHERE tenant = OLD.tenant;
END;
"""


class SqliteRefStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteFile(path, schema=_SCHEMA + AUDIT_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _exists(self, conn: sqlite3.Connection, tenant: str, repo: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM repos WHERE tenant = ? AND name = ?", (tenant, repo)
        ).fetchone()
        return row is not None

    def create_repo(
        self, tenant: str, repo: str, refs: Mapping[bytes, bytes] | None = None
    ) -> None:
        check_initial_refs(refs or {})
        with self._db.transaction() as conn:
            try:
                conn.execute(
                    "INSERT INTO repos (tenant, name, created_ms) VALUES (?, ?, ?)",
                    (tenant, repo, int(time.time() * 1000)),
                )
            except sqlite3.IntegrityError:
                raise RepoAlreadyExists(tenant, repo) from None
            conn.executemany(
                "INSERT INTO refs (tenant, repo, ref, value) VALUES (?, ?, ?, ?)",
                [(tenant, repo, ref, value) for ref, value in (refs or {}).items()],
            )

    def delete_repo(self, tenant: str, repo: str) -> None:
        with self._db.transaction() as conn:
            cur = conn.execute("DELETE FROM repos WHERE tenant = ? AND name = ?", (tenant, repo))
            if cur.rowcount == 0:
                raise RepoNotFound(tenant, repo)
            conn.execute("DELETE FROM refs WHERE tenant = ? AND repo = ?", (tenant, repo))

    def repo_exists(self, tenant: str, repo: str) -> bool:
        with self._db.locked() as conn:
            return self._exists(conn, tenant, repo)

    def count_repos(self, tenant: str) -> int:
        with self._db.locked() as conn:
            row = conn.execute("SELECT n FROM repo_counts WHERE tenant = ?", (tenant,)).fetchone()
        return max(0, int(row[0])) if row else 0

    def add_repo_bytes(self, tenant: str, delta: int) -> None:
        if not delta:
            return
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO repo_bytes (tenant, n) VALUES (?, ?)"
                " ON CONFLICT (tenant) DO UPDATE SET n = n + excluded.n",
                (tenant, delta),
            )

    def repo_bytes(self, tenant: str) -> int:
        with self._db.locked() as conn:
            row = conn.execute("SELECT n FROM repo_bytes WHERE tenant = ?", (tenant,)).fetchone()
        return max(0, int(row[0])) if row else 0

    def list_repos(self, tenant: str, *, limit: int = 100, after: str | None = None) -> RepoPage:
        if limit < 1:
            raise InvalidParameter(f"limit must be at least 1, not {limit}")
        with self._db.locked() as conn:
            rows = conn.execute(
                "SELECT name FROM repos WHERE tenant = ? AND name > ? ORDER BY name LIMIT ?",
                (tenant, after or "", limit + 1),
            ).fetchall()
        names = [str(r[0]) for r in rows[:limit]]
        return RepoPage(names=names, next_marker=names[-1] if len(rows) > limit else None)

    def get_refs(self, tenant: str, repo: str) -> dict[bytes, bytes]:
        with self._db.locked() as conn:
            # Both reads under the lock: one consistent snapshot without a transaction.
            if not self._exists(conn, tenant, repo):
                raise RepoNotFound(tenant, repo)
            rows = conn.execute(
                "SELECT ref, value FROM refs WHERE tenant = ? AND repo = ?", (tenant, repo)
            ).fetchall()
        return {bytes(ref): bytes(value) for ref, value in rows}

    @property
    def file(self) -> SqliteFile:
        """The file, for the audit log reader (its `audit` table: pushes)."""
        return self._db

    def compare_and_swap(
        self,
        tenant: str,
        repo: str,
        updates: Sequence[RefUpdate],
        *,
        audit: AuditRecord | None = None,
    ) -> None:
        check_updates(updates)
        boundary(Kind.REF, "before")
        with self._db.transaction() as conn:
            if not self._exists(conn, tenant, repo):
                raise RepoNotFound(tenant, repo)
            insert_audit(conn, audit)  # rolled back with the swap if a ref mismatches
            for ref, old, _new in updates:
                row = conn.execute(
                    "SELECT value FROM refs WHERE tenant = ? AND repo = ? AND ref = ?",
                    (tenant, repo, ref),
                ).fetchone()
                actual = None if row is None else bytes(row[0])
                if (actual is not None) if is_zero(old) else (actual != old):
                    raise RefConflict(ref, old, actual)  # rolls the transaction back
            for ref, _old, new in updates:
                if is_zero(new):
                    conn.execute(
                        "DELETE FROM refs WHERE tenant = ? AND repo = ? AND ref = ?",
                        (tenant, repo, ref),
                    )
                else:
                    conn.execute(
                        "INSERT INTO refs (tenant, repo, ref, value) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (tenant, repo, ref) DO UPDATE SET value = excluded.value",
                        (tenant, repo, ref, new),
                    )
        boundary(Kind.REF, "after")
