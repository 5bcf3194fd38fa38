"""SQLite adapter of the FunctionStore and AliasStore ports: $LATEST, immutable
published versions and the aliases naming them, in one database so that each
invariant between them is one transaction."""

from __future__ import annotations

import sqlite3
import threading

from treadle.adapters.sqlite import code_refs
from treadle.adapters.sqlite.audit import insert_audit
from treadle.adapters.sqlite.db import Database
from treadle.domain.audit import AuditRecord
from treadle.domain.code_refs import CodeRef
from treadle.domain.errors import (
    AlreadyExists,
    Conflict,
    InvalidParameter,
    NotFound,
    PreconditionFailed,
)
from treadle.domain.ports import Alias, FunctionVersion
from treadle.domain.publishing import version_to_publish
from treadle.domain.usage import FunctionCounts

LATEST = "$LATEST"
_REVISION_MOVED = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


class SqliteFunctionStore:
    """Function versions in SQLite, with a cache of what was read.

    Every invocation looks its function up. The cache is emptied of a function on every
    write of it made here, and emptied whole whenever the `functions` generation (moved
    by triggers in every write's transaction) is not the one it was filled at: a write
    by another process on the data directory (a second server process) is seen at the
    next look.

    `sole_writer`: this store makes every write of its file's functions (one server
    process, which holds the data directory's lock), so the generation is not read: its
    own writes are all there is to follow. The read was 60 µs of CPU, twice per
    execution, on a reader connection whose page cache every commit of the writer had
    emptied (`python -m benchmarks.engine`).
    """

    def __init__(self, db: Database, *, sole_writer: bool = False) -> None:
        self._db = db
        self._cache: dict[tuple[str, str, str], FunctionVersion] = {}
        # The file's generation; a sole writer's counts its own writes instead, moved
        # before and after each commit (`_forget`).
        self._generation = 0
        self._generation_lock = threading.Lock()
        self._sole_writer = sole_writer

    def _sync(self) -> int:
        """The current generation, having forgotten what was cached under another one.
        Read before the version itself, and a version is cached only if the generation
        did not move meanwhile: a write landing between the two reads cannot leave its
        old row cached. A sole writer's generation is its count of its own writes."""
        if self._sole_writer:
            return self._generation
        with self._db.read() as conn:
            row = conn.execute("SELECT n FROM generations WHERE name = 'functions'").fetchone()
        generation = int(row[0]) if row else 0
        with self._generation_lock:
            if generation != self._generation:
                self._cache.clear()
                self._generation = generation
        return generation

    def _forget(self, tenant: str, name: str) -> None:
        # Under the lock the cache is filled and emptied by: iterating it while another
        # thread adds a version would fail ("dictionary changed size").
        with self._generation_lock:
            if self._sole_writer:
                self._generation += 1
            for key in [k for k in self._cache if k[0] == tenant and k[1] == name]:
                self._cache.pop(key, None)

    def put_latest(
        self,
        fn: FunctionVersion,
        *,
        create: bool,
        expected_revision: str | None = None,
        audit: AuditRecord | None = None,
    ) -> None:
        self._forget(fn.tenant, fn.function_name)
        body = fn.model_dump_json()
        with self._db.write() as conn:
            if create:
                try:
                    conn.execute(
                        "INSERT INTO functions (tenant, name, version, version_num, body)"
                        " VALUES (?, ?, ?, 0, ?)",
                        (fn.tenant, fn.function_name, LATEST, body),
                    )
                except sqlite3.IntegrityError:
                    raise AlreadyExists(f"Function already exist: {fn.function_name}") from None
                insert_audit(conn, audit)
                self._forget(fn.tenant, fn.function_name)
                return
            row = conn.execute(
                "SELECT json_extract(body, '$.revision_id') FROM functions"
                " WHERE tenant = ? AND name = ? AND version = ?",
                (fn.tenant, fn.function_name, LATEST),
            ).fetchone()
            if row is None:
                raise NotFound(f"Function not found: {fn.function_arn}")
            if expected_revision is not None and row[0] != expected_revision:
                raise PreconditionFailed(_REVISION_MOVED)
            conn.execute(
                "UPDATE functions SET body = ? WHERE tenant = ? AND name = ? AND version = ?",
                (body, fn.tenant, fn.function_name, LATEST),
            )
            insert_audit(conn, audit)
        self._forget(fn.tenant, fn.function_name)

    def usage(self, tenant: str) -> tuple[int, int]:
        """(functions, code bytes over $LATEST and every version), as Lambda counts them."""
        counts = self.counts(tenant)
        return counts.functions, counts.code_bytes

    def counts(self, tenant: str) -> FunctionCounts:
        """The counters the triggers of `db.SCHEMA` keep in each write's transaction."""
        with self._db.read() as conn:
            rows = dict(
                conn.execute(
                    "SELECT counter, n FROM usage_counts WHERE tenant = ?"
                    " AND counter IN ('functions', 'versions', 'code_bytes')",
                    (tenant,),
                ).fetchall()
            )
        return FunctionCounts(
            functions=max(0, int(rows.get("functions", 0))),
            versions=max(0, int(rows.get("versions", 0))),
            code_bytes=max(0, int(rows.get("code_bytes", 0))),
        )

    def get(self, tenant: str, name: str, version: str = LATEST) -> FunctionVersion:
        seen = self._sync()
        cached = self._cache.get((tenant, name, version))
        if cached is not None:
            return cached
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT body FROM functions WHERE tenant = ? AND name = ? AND version = ?",
                (tenant, name, version),
            ).fetchone()
        if row is None:
            suffix = "" if version == LATEST else f":{version}"
            raise NotFound(f"Function not found: {name}{suffix}")
        fn = FunctionVersion.model_validate_json(row[0])
        with self._generation_lock:
            if seen == self._generation:
                self._cache[(tenant, name, version)] = fn
        return fn

    def publish(
        self,
        tenant: str,
        name: str,
        description: str | None,
        *,
        audit: AuditRecord | None = None,
    ) -> FunctionVersion:
        self._forget(tenant, name)
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT body FROM functions WHERE tenant = ? AND name = ? AND version = ?",
                (tenant, name, LATEST),
            ).fetchone()
            if row is None:
                raise NotFound(f"Function not found: {name}")
            latest = FunctionVersion.model_validate_json(row[0])
            last = conn.execute(
                "SELECT version_num, body FROM functions WHERE tenant = ? AND name = ?"
                " AND version != ? ORDER BY version_num DESC LIMIT 1",
                (tenant, name, LATEST),
            ).fetchone()
            previous = None if last is None else FunctionVersion.model_validate_json(last[1])
            number = (last[0] if last else 0) + 1
            version, new = version_to_publish(latest, previous, number, description)
            if new:
                conn.execute(
                    "INSERT INTO functions (tenant, name, version, version_num, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (tenant, name, str(number), number, version.model_dump_json()),
                )
            # A publish of unchanged code changes nothing, and its record says so too.
            insert_audit(conn, audit)
        self._forget(tenant, name)  # after the commit too, as every write here
        return version

    def list_latest(
        self, tenant: str, marker: str | None, limit: int
    ) -> tuple[list[FunctionVersion], str | None]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT name, body FROM functions WHERE tenant = ? AND version = ? AND name > ?"
                " ORDER BY name LIMIT ?",
                (tenant, LATEST, marker or "", limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [FunctionVersion.model_validate_json(r[1]) for r in rows]
        return items, (rows[-1][0] if more else None)

    def list_versions(
        self, tenant: str, name: str, marker: str | None, limit: int
    ) -> tuple[list[FunctionVersion], str | None]:
        try:
            after = int(marker) if marker else -1
        except ValueError:
            raise InvalidParameter(f"Invalid marker {marker!r}.") from None
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT version_num, body FROM functions WHERE tenant = ? AND name = ?"
                " AND version_num > ? ORDER BY version_num LIMIT ?",
                (tenant, name, after, limit + 1),
            ).fetchall()
        if not rows and after < 0:
            raise NotFound(f"Function not found: {name}")
        more = len(rows) > limit
        rows = rows[:limit]
        items = [FunctionVersion.model_validate_json(r[1]) for r in rows]
        return items, (str(rows[-1][0]) if more else None)

    def delete(
        self,
        tenant: str,
        name: str,
        version: str | None = None,
        *,
        audit: AuditRecord | None = None,
        unless_pinned: bool = False,
    ) -> None:
        self._forget(tenant, name)
        with self._db.write() as conn:
            if unless_pinned:
                # In the delete's own transaction: no execution can start or close
                # between this check and the delete (one writer at a time).
                _refuse_if_pinned(conn, tenant, name, version)
            if version is None:
                cur = conn.execute(
                    "DELETE FROM functions WHERE tenant = ? AND name = ?", (tenant, name)
                )
                conn.execute(
                    "DELETE FROM aliases WHERE tenant = ? AND function_name = ?", (tenant, name)
                )
            else:
                _refuse_if_aliased(conn, tenant, name, version)
                cur = conn.execute(
                    "DELETE FROM functions WHERE tenant = ? AND name = ? AND version = ?",
                    (tenant, name, version),
                )
            if cur.rowcount == 0:
                raise NotFound(f"Function not found: {name}")
            insert_audit(conn, audit)
        self._forget(tenant, name)

    # -- code references (CodeRefs: the triggers of `code_refs` keep them) -------------

    def unreferenced_code(self, after: str | None, limit: int) -> list[CodeRef]:
        with self._db.read() as conn:
            return code_refs.unreferenced(conn, after, limit)

    def mark_code_free(self, key: str, now_ms: int) -> None:
        with self._db.write() as conn:
            code_refs.mark_free(conn, key, now_ms)

    def release_code(self, key: str, cutoff_ms: int) -> bool:
        with self._db.write() as conn:
            return code_refs.release(conn, key, cutoff_ms)

    def live_pins(self, tenant: str, name: str) -> dict[str, int]:
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT version, COUNT(*) FROM executions WHERE tenant = ? AND function_name = ?"
                f" AND {_LIVE} GROUP BY version",
                (tenant, name),
            ).fetchall()
        return {str(v): int(n) for v, n in rows}

    # -- aliases (AliasStore) ----------------------------------------------------------

    def create_alias(self, alias: Alias) -> None:
        with self._db.write() as conn:
            _require_version(conn, alias.tenant, alias.function_name, alias.function_version)
            try:
                conn.execute(
                    "INSERT INTO aliases (tenant, function_name, name, function_version, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        alias.tenant,
                        alias.function_name,
                        alias.name,
                        alias.function_version,
                        alias.model_dump_json(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"Alias already exists: {alias.alias_arn}") from None

    def get_alias(self, tenant: str, function_name: str, name: str) -> Alias:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT body FROM aliases WHERE tenant = ? AND function_name = ? AND name = ?",
                (tenant, function_name, name),
            ).fetchone()
        if row is None:
            raise NotFound(f"Alias not found: {function_name}:{name}")
        return Alias.model_validate_json(row[0])

    def list_aliases(
        self,
        tenant: str,
        function_name: str,
        version: str | None,
        marker: str | None,
        limit: int,
    ) -> tuple[list[Alias], str | None]:
        with self._db.read() as conn:
            _require_version(conn, tenant, function_name, LATEST)
            rows = conn.execute(
                "SELECT name, body FROM aliases WHERE tenant = ? AND function_name = ?"
                " AND name > ? AND (? IS NULL OR function_version = ?) ORDER BY name LIMIT ?",
                (tenant, function_name, marker or "", version, version, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [Alias.model_validate_json(r[1]) for r in rows]
        return items, (rows[-1][0] if more else None)

    def update_alias(self, alias: Alias, expected_revision: str) -> None:
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT json_extract(body, '$.revision_id') FROM aliases"
                " WHERE tenant = ? AND function_name = ? AND name = ?",
                (alias.tenant, alias.function_name, alias.name),
            ).fetchone()
            if row is None:
                raise NotFound(f"Alias not found: {alias.alias_arn}")
            if row[0] != expected_revision:
                raise PreconditionFailed(_REVISION_MOVED)
            _require_version(conn, alias.tenant, alias.function_name, alias.function_version)
            conn.execute(
                "UPDATE aliases SET function_version = ?, body = ?"
                " WHERE tenant = ? AND function_name = ? AND name = ?",
                (
                    alias.function_version,
                    alias.model_dump_json(),
                    alias.tenant,
                    alias.function_name,
                    alias.name,
                ),
            )

    def delete_alias(self, tenant: str, function_name: str, name: str) -> None:
        with self._db.write() as conn:
            cur = conn.execute(
                "DELETE FROM aliases WHERE tenant = ? AND function_name = ? AND name = ?",
                (tenant, function_name, name),
            )
            if cur.rowcount == 0:
                raise NotFound(f"Alias not found: {function_name}:{name}")


def _require_version(conn: sqlite3.Connection, tenant: str, name: str, version: str) -> None:
    row = conn.execute(
        "SELECT 1 FROM functions WHERE tenant = ? AND name = ? AND version = ?",
        (tenant, name, version),
    ).fetchone()
    if row is None:
        suffix = "" if version == LATEST else f":{version}"
        raise NotFound(f"Function not found: {name}{suffix}")


# The `executions_live` index's own condition, word for word, so SQLite uses it.
_LIVE = "status NOT IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'STOPPED')"


def _refuse_if_pinned(
    conn: sqlite3.Connection, tenant: str, name: str, version: str | None
) -> None:
    row = conn.execute(
        f"SELECT version FROM executions WHERE tenant = ? AND function_name = ?"
        f" AND (? IS NULL OR version = ?) AND {_LIVE} LIMIT 1",
        (tenant, name, version, version),
    ).fetchone()
    if row is not None:
        what = name if version is None else f"{name}:{version}"
        raise Conflict(f"Function {what} has executions that are not closed (one on {row[0]}).")


def _refuse_if_aliased(conn: sqlite3.Connection, tenant: str, name: str, version: str) -> None:
    row = conn.execute(
        "SELECT name FROM aliases WHERE tenant = ? AND function_name = ? AND function_version = ?"
        " ORDER BY name LIMIT 1",
        (tenant, name, version),
    ).fetchone()
    if row is not None:
        raise Conflict(
            f"Unable to delete version because the following aliases reference it: [{row[0]}]"
        )
