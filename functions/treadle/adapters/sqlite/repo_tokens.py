"""`TokenStore` over its own SQLite file: the embedded twin of the DynamoDB adapter.

Expired tokens are pruned as new ones are stored (the index on `expires_ms` makes
that one range delete), as DynamoDB's TTL does on AWS: the table holds live tokens
plus at most a grace period's worth of dead ones.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from treadle.adapters.sqlite.connection import SqliteFile
from treadle.artifacts.ports import RepoToken, TokenNotFound
from treadle.domain.errors import AlreadyExists

# Kept this long past expiry before pruning: long enough that a clock step does not
# race a verification, short enough that the table stays small.
PRUNE_GRACE_MS = 3600 * 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS repo_tokens (
    token_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    repo TEXT NOT NULL,
    access TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repo_tokens_by_repo ON repo_tokens (tenant, repo, token_id);
CREATE INDEX IF NOT EXISTS repo_tokens_by_expiry ON repo_tokens (expires_ms);
"""
_COLUMNS = "token_id, tenant, repo, access, secret_hash, created_ms, expires_ms"


def _token(row: tuple[object, ...]) -> RepoToken:
    token_id, tenant, repo, access, secret_hash, created_ms, expires_ms = row
    return RepoToken(
        token_id=str(token_id),
        tenant=str(tenant),
        repo=str(repo),
        access=str(access),
        secret_hash=str(secret_hash),
        created_ms=int(str(created_ms)),
        expires_ms=int(str(expires_ms)),
    )


class SqliteTokenStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteFile(path, schema=_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def put(self, token: RepoToken) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "DELETE FROM repo_tokens WHERE expires_ms < ?",
                # The minting clock's now: the service's clock is the one tokens obey.
                (token.created_ms - PRUNE_GRACE_MS,),
            )
            try:
                conn.execute(
                    f"INSERT INTO repo_tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        token.token_id,
                        token.tenant,
                        token.repo,
                        token.access,
                        token.secret_hash,
                        token.created_ms,
                        token.expires_ms,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"Token '{token.token_id}' already exists.") from None

    def get(self, token_id: str) -> RepoToken | None:
        with self._db.locked() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM repo_tokens WHERE token_id = ?", (token_id,)
            ).fetchone()
        return None if row is None else _token(row)

    def list(self, tenant: str, repo: str) -> list[RepoToken]:
        with self._db.locked() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM repo_tokens WHERE tenant = ? AND repo = ? "
                "ORDER BY token_id",
                (tenant, repo),
            ).fetchall()
        return [_token(r) for r in rows]

    def delete(self, tenant: str, repo: str, token_id: str) -> None:
        with self._db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM repo_tokens WHERE token_id = ? AND tenant = ? AND repo = ?",
                (token_id, tenant, repo),
            )
            if cur.rowcount == 0:
                raise TokenNotFound(repo, token_id)

    def delete_repo(self, tenant: str, repo: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM repo_tokens WHERE tenant = ? AND repo = ?", (tenant, repo))
