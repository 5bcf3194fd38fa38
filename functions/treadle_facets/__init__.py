"""Facets: a small SQLite database per name, for a tenant's code, beside the durable SDK.

    from treadle_facets import connect

    db = connect("orders")            # made on first use; names are per tenant
    with db:                          # a transaction: committed, or rolled back
        db.execute("CREATE TABLE IF NOT EXISTS orders(id TEXT PRIMARY KEY, total INT)")
        db.execute("INSERT OR REPLACE INTO orders VALUES (?, ?)", ("o-1", 42))

`connect` returns a DB-API 2.0 connection (`sqlite3.Connection`) on the facet's own
file, in WAL mode with a busy timeout, so concurrent executions of the same tenant may
write it at once. Only this tenant's code (and its keys, through `/v1/facets`) can
reach it. A write that would make the database larger than the tenant's
`maxFacetBytes` fails with `FacetFull` (SQLite's SQLITE_FULL); the facet stays
readable and writable within its size. See docs/facets.md, also for exactly-once
effects from a `context.step`.

Stdlib only: it runs inside the sandbox, where the platform provides it.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["FacetError", "FacetFull", "connect", "once", "step_key"]

PAGE_SIZE = 4096
# Set in tenant Lambdas that mount their tenant's facets (EFS): where (settings.py names it).
MOUNT_ENV = "TREADLE_FACETS_MOUNT_PATH"
_LINK = "treadle.adapters.sandbox.facet_link"


class FacetError(Exception):
    """The platform refused the facet (bad name, quota of facets, not in Treadle)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class FacetFull(sqlite3.OperationalError):
    """A write would grow the facet past the tenant's maxFacetBytes (SQLITE_FULL).

    The statement (and, if it was not caught, the transaction) did not happen; the
    facet stays as it was, readable.
    """


def _full(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _translated(call: Any) -> Any:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            if _full(exc):
                raise FacetFull(f"facet is full (database or disk is full): {exc}") from exc
            raise

    wrapper.__name__ = call.__name__
    wrapper.__doc__ = call.__doc__
    return wrapper


class FacetCursor(sqlite3.Cursor):
    execute = _translated(sqlite3.Cursor.execute)
    executemany = _translated(sqlite3.Cursor.executemany)
    executescript = _translated(sqlite3.Cursor.executescript)


class FacetConnection(sqlite3.Connection):
    """sqlite3's connection, raising FacetFull rather than a bare OperationalError."""

    def cursor(self, factory: Any = FacetCursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:  # type: ignore[override]
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script: str, /) -> Any:  # type: ignore[override]
        return self.cursor().executescript(script)

    commit = _translated(sqlite3.Connection.commit)

    def __exit__(self, *exc: Any) -> Any:
        try:
            return super().__exit__(*exc)
        except sqlite3.OperationalError as error:
            if _full(error):
                raise FacetFull(f"facet is full (database or disk is full): {error}") from error
            raise


def connect(name: str, *, timeout: float = 10.0, **kwargs: Any) -> FacetConnection:
    """Open the tenant's facet `name` (made on first use).

    `timeout`: seconds a statement waits for another writer before "database is
    locked". Other keyword arguments go to `sqlite3.connect` (e.g. `isolation_level`).
    """
    link: Any = sys.modules.get(_LINK)
    if link is not None:
        try:
            path, max_bytes = link.grant(name)
        except link.FacetCallError as exc:
            raise FacetError(exc.code, str(exc)) from None
    elif os.environ.get(MOUNT_ENV):
        path, max_bytes = _grant_over_http(name, os.environ[MOUNT_ENV])
    else:
        raise FacetError("Unavailable", "Facets are available in Treadle's sandbox only.")
    kwargs.setdefault("check_same_thread", False)
    db: FacetConnection = sqlite3.connect(path, timeout=timeout, factory=FacetConnection, **kwargs)
    try:
        # WAL is the file's (set when it was made); these are per connection.
        db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        # NORMAL in WAL: a committed transaction survives the process being killed;
        # only a power loss may take the last ones back (never corrupting the file).
        # Without WAL (EFS: WAL needs shared memory on one host) only FULL is that safe.
        wal = str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        db.execute(f"PRAGMA synchronous={'NORMAL' if wal else 'FULL'}")
        page = int(db.execute("PRAGMA page_size").fetchone()[0]) or PAGE_SIZE
        pages = max(1, max_bytes // page)
        db.execute(f"PRAGMA max_page_count={pages}")
        # The log too stays about the database's quota: checkpointed once it holds that
        # many pages (SQLite's default, 1000, would let a 64 KiB facet keep a 4 MiB
        # log), and cut back to the quota after a checkpoint.
        db.execute(f"PRAGMA wal_autocheckpoint={min(1000, max(pages, 16))}")
        db.execute(f"PRAGMA journal_size_limit={max_bytes}")
    except BaseException:
        db.close()
        raise
    return db


def _grant_over_http(name: str, mount: str) -> tuple[str, int]:
    """A tenant Lambda's facets are its tenant's EFS access point, mounted at `mount`:
    the platform makes the facet (quotas) at `POST /v1/facets/{name}`, asked with the
    function's own credentials (its sandbox key) at its endpoint; then the file is
    opened on the mount like anywhere else."""
    key = f"{os.environ.get('AWS_ACCESS_KEY_ID', '')}:{os.environ.get('AWS_SECRET_ACCESS_KEY', '')}"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_LAMBDA", "").rstrip("/")
    request = urllib.request.Request(
        f"{endpoint}/v1/facets/{urllib.parse.quote(name, safe='')}",
        data=b"{}",
        method="POST",
        headers={
            "authorization": "Basic " + base64.b64encode(key.encode()).decode(),
            "content-type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read()).get("error", {})
        except ValueError:
            error = {}
        raise FacetError(
            str(error.get("code") or exc.code), str(error.get("message") or exc.reason)
        ) from None
    return os.path.join(mount, str(answer["name"]), "db.sqlite"), int(answer["maxBytes"])


def step_key(step_context: Any) -> str:
    """The step's identity, the same on every attempt and replay: execution ARN and
    operation id, as the durable SDK gives them to the step's logger (the fields it
    logs with every line); the key of an exactly-once effect (`once`)."""
    extra = getattr(getattr(step_context, "logger", None), "_default_extra", None) or {}
    arn, op_id = extra.get("executionArn"), extra.get("operationId")
    if not arn or not op_id:
        raise FacetError("InvalidParameter", "Not a durable step's context (no operation id).")
    return f"{arn}#{op_id}"


_ONCE_TABLE = (
    "CREATE TABLE IF NOT EXISTS _treadle_once("
    "key TEXT PRIMARY KEY, result TEXT NOT NULL, at REAL NOT NULL)"
)


def once(db: sqlite3.Connection, key: str, effect: Any) -> Any:
    """Run `effect(db)` and record `key` in the same transaction, unless `key` is recorded.

    A step runs at least once (a crash after its writes but before its checkpoint runs
    it again); with its writes made through `once` under `step_key(step_context)`, the
    facet sees them exactly once: the second attempt finds the key and returns what the
    first recorded (JSON). The effect must write only through `db`.
    """
    import json

    db.execute(_ONCE_TABLE)
    db.commit()
    in_transaction = db.in_transaction
    if not in_transaction:
        db.execute("BEGIN IMMEDIATE")  # the check and the writes: one writer at a time
    try:
        row = db.execute("SELECT result FROM _treadle_once WHERE key = ?", (key,)).fetchone()
        if row is not None:
            result = json.loads(row[0])
        else:
            result = effect(db)
            db.execute(
                "INSERT INTO _treadle_once(key, result, at) VALUES (?, ?, ?)",
                (key, json.dumps(result), time.time()),
            )
        if not in_transaction:
            db.execute("COMMIT")
        return result
    except BaseException:
        if not in_transaction and db.in_transaction:
            db.execute("ROLLBACK")
        raise
