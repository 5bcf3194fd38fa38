"""SQLite adapter of the FunctionStore port: $LATEST and immutable published versions."""

from __future__ import annotations

import sqlite3

from treadle.adapters.sqlite.db import Database
from treadle.domain.errors import AlreadyExists, InvalidParameter, NotFound
from treadle.domain.ports import FunctionVersion
from treadle.domain.publishing import version_to_publish

LATEST = "$LATEST"


class SqliteFunctionStore:
    """Function versions in SQLite, with a cache of what was read.

    Every invocation looks its function up; the platform is the only writer of its data
    directory, so the cache is invalidated on every write of that function.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[tuple[str, str, str], FunctionVersion] = {}

    def _forget(self, tenant: str, name: str) -> None:
        for key in [k for k in self._cache if k[0] == tenant and k[1] == name]:
            self._cache.pop(key, None)

    def put_latest(self, fn: FunctionVersion, *, create: bool) -> None:
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
                self._forget(fn.tenant, fn.function_name)
                return
            cur = conn.execute(
                "UPDATE functions SET body = ? WHERE tenant = ? AND name = ? AND version = ?",
                (body, fn.tenant, fn.function_name, LATEST),
            )
            if cur.rowcount != 1:
                raise NotFound(f"Function not found: {fn.function_arn}")
        self._forget(fn.tenant, fn.function_name)

    def usage(self, tenant: str) -> tuple[int, int]:
        """(functions, code bytes over $LATEST and every version), as Lambda counts them."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FILTER (WHERE version = ?),"
                " COALESCE(SUM(json_extract(body, '$.code_size')), 0)"
                " FROM functions WHERE tenant = ?",
                (LATEST, tenant),
            ).fetchone()
        return int(row[0]), int(row[1])

    def get(self, tenant: str, name: str, version: str = LATEST) -> FunctionVersion:
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
        self._cache[(tenant, name, version)] = fn
        return fn

    def publish(self, tenant: str, name: str, description: str | None) -> FunctionVersion:
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

    def delete(self, tenant: str, name: str, version: str | None = None) -> None:
        self._forget(tenant, name)
        with self._db.write() as conn:
            if version is None:
                cur = conn.execute(
                    "DELETE FROM functions WHERE tenant = ? AND name = ?", (tenant, name)
                )
            else:
                cur = conn.execute(
                    "DELETE FROM functions WHERE tenant = ? AND name = ? AND version = ?",
                    (tenant, name, version),
                )
            if cur.rowcount == 0:
                raise NotFound(f"Function not found: {name}")
        self._forget(tenant, name)
