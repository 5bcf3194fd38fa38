"""Facets through a real `treadle dev`: tenant code opens a SQLite facet by name.

Tenant A's functions write and read a facet across invocations and concurrently; the
control plane lists, exports and deletes it; tenant B, attacking, can neither open
(the path is not in its root), list, export nor delete A's facets, by name or by
guessing; quotas refuse a facet too many and a write past the byte quota (FacetFull),
leaving the facet readable.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, v1
from treadle.adapters.sandbox.confine import probe

ROOT = os.geteuid() == 0
pytestmark = pytest.mark.xdist_group("facets")

HANDLER = """
import errno, json, os, sqlite3
from treadle_facets import connect, FacetError, FacetFull

def _try(fn):
    try:
        return fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__)

def handler(event, context):
    op = event["op"]
    try:
        if op == "write":
            db = connect(event["facet"])
            with db:
                db.execute("CREATE TABLE IF NOT EXISTS items(k TEXT PRIMARY KEY, v TEXT)")
            for i in range(event.get("n", 1)):
                with db:  # one transaction each: writers interleave
                    db.execute("INSERT INTO items VALUES (?, ?)", (f"{event['tag']}-{i}", "x"))
            return {"count": db.execute("SELECT count(*) FROM items").fetchone()[0]}
        if op == "read":
            db = connect(event["facet"])
            try:
                rows = db.execute("SELECT k FROM items ORDER BY k").fetchall()
            except sqlite3.OperationalError as exc:
                return {"error": str(exc)}
            return {"keys": [r[0] for r in rows]}
        if op == "fill":
            db = connect(event["facet"])
            with db:
                db.execute("CREATE TABLE IF NOT EXISTS blobs(b BLOB)")
                db.execute("INSERT INTO blobs VALUES (zeroblob(1000))")
            full = None
            try:
                for _ in range(10_000):
                    with db:
                        db.execute("INSERT INTO blobs VALUES (zeroblob(4000))")
            except FacetFull as exc:
                full = {"type": type(exc).__name__, "message": str(exc),
                        "operational": isinstance(exc, sqlite3.OperationalError)}
            count = db.execute("SELECT count(*) FROM blobs").fetchone()[0]
            check = db.execute("PRAGMA integrity_check").fetchone()[0]
            # Still writable within its size: a delete and a small insert.
            with db:
                db.execute("DELETE FROM blobs WHERE rowid = (SELECT max(rowid) FROM blobs)")
                db.execute("INSERT INTO blobs VALUES (zeroblob(10))")
            return {"full": full, "count": count, "integrity": check}
        if op == "probe":
            out = {"facets_dir": _try(lambda: sorted(os.listdir("/var/treadle/facets")))}
            out["paths"] = {p: _try(lambda p=p: open(p, "rb").read(16).decode("latin-1"))
                            for p in event.get("paths", [])}
            out["mkdir"] = _try(lambda: os.mkdir("/var/treadle/facets/made-by-code") or "made")
            return out
    except FacetError as exc:
        return {"refused": exc.code, "message": str(exc)}
    return {"unknown": op}
"""


class World:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.admin = server.credentials("treadle-admin")
        status, body = v1(
            server, "POST", "/v1/tenants", {"name": "facets-b"}, credentials=self.admin
        )
        assert status == 201, body
        self.b_account = body["tenant"]["accountId"]
        self.b_keys = (body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"])
        self.a = client(server)
        self.b = client(server, credentials=self.b_keys)
        self.a_account = deploy(self.a, "facets", {"handler.py": HANDLER}, durable=False)[
            "FunctionArn"
        ].split(":")[4]
        deploy(self.b, "facets", {"handler.py": HANDLER}, durable=False)

    def call(self, event: dict[str, Any], *, tenant: str = "a") -> Any:
        lam = self.a if tenant == "a" else self.b
        resp = lam.invoke(FunctionName="facets", Payload=json.dumps(event).encode())
        payload = json.loads(resp["Payload"].read())
        assert "FunctionError" not in resp, payload
        return payload


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[World]:
    yield World(server)


def test_a_function_writes_and_reads_its_facet_across_invocations(world: World) -> None:
    assert world.call({"op": "write", "facet": "orders", "tag": "first", "n": 3}) == {"count": 3}
    assert world.call({"op": "write", "facet": "orders", "tag": "second"}) == {"count": 4}
    keys = world.call({"op": "read", "facet": "orders"})["keys"]
    assert keys == ["first-0", "first-1", "first-2", "second-0"]


def test_two_concurrent_executions_write_the_same_facet_safely(world: World) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda tag: world.call({"op": "write", "facet": "shared", "tag": tag, "n": 100}),
                ["w0", "w1", "w2", "w3"],
            )
        )
    assert all(r["count"] >= 100 for r in results), results
    keys = world.call({"op": "read", "facet": "shared"})["keys"]
    assert len(keys) == 400 and len(set(keys)) == 400


def test_the_tenant_lists_exports_and_deletes_its_facets(world: World, tmp_path: Path) -> None:
    world.call({"op": "write", "facet": "listed", "tag": "l", "n": 2})
    world.call({"op": "write", "facet": "scratch.session-1", "tag": "s"})
    status, body = v1(world.server, "GET", "/v1/facets")
    assert status == 200
    listed = {f["name"]: f for f in body["facets"]}
    assert {"listed", "scratch.session-1"} <= set(listed)
    assert listed["listed"]["sizeBytes"] > 0 and listed["listed"]["lastUsed"] > 0

    status, raw = v1(world.server, "GET", "/v1/facets/listed/export")
    assert status == 200 and raw[:16] == b"SQLite format 3\x00"
    copy = tmp_path / "listed.sqlite"
    copy.write_bytes(raw)
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT k FROM items ORDER BY k").fetchall() == [("l-0",), ("l-1",)]
    db.close()

    assert v1(world.server, "DELETE", "/v1/facets/scratch.session-1")[0] == 204
    names = {f["name"] for f in v1(world.server, "GET", "/v1/facets")[1]["facets"]}
    assert "scratch.session-1" not in names
    status, body = v1(world.server, "DELETE", "/v1/facets/scratch.session-1")
    assert status == 404, body

    # The admin sees every tenant's; a tenant may not use the admin's route.
    status, body = v1(
        world.server, "GET", f"/v1/tenants/{world.a_account}/facets", credentials=world.admin
    )
    assert status == 200 and "listed" in {f["name"] for f in body["facets"]}
    assert v1(world.server, "GET", f"/v1/tenants/{world.a_account}/facets")[0] == 403


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "x" * 129, "a..b", ""])
def test_a_bad_facet_name_is_refused_precisely(world: World, name: str) -> None:
    got = world.call({"op": "write", "facet": name, "tag": "t"})
    assert got["refused"] == "InvalidParameterValueException", got


def test_tenant_b_cannot_open_list_export_or_delete_a_facets(world: World) -> None:
    world.call({"op": "write", "facet": "secret", "tag": "a-only"})
    # Opening the same name gives B a facet of its own, empty: names are per tenant.
    got = world.call({"op": "read", "facet": "secret"}, tenant="b")
    assert got == {"error": "no such table: items"}
    # Guessing through the API: not found, whatever the name.
    status, body = v1(world.server, "GET", "/v1/facets", credentials=world.b_keys)
    assert status == 200 and "orders" not in {f["name"] for f in body["facets"]}
    for name in ("orders", "listed", f"{world.a_account}", "..%2F" + world.a_account):
        status, _ = v1(world.server, "GET", f"/v1/facets/{name}/export", credentials=world.b_keys)
        assert status in (400, 404), name
        status, _ = v1(world.server, "DELETE", f"/v1/facets/{name}", credentials=world.b_keys)
        assert status in (400, 404), name
    status, _ = v1(
        world.server, "GET", f"/v1/tenants/{world.a_account}/facets", credentials=world.b_keys
    )
    assert status == 403
    # A's facets are all still there.
    assert world.call({"op": "read", "facet": "secret"})["keys"] == ["a-only-0"]
    assert len(world.call({"op": "read", "facet": "orders"})["keys"]) >= 4


@pytest.mark.skipif(not ROOT, reason="tenants have own roots only when the platform is root")
@pytest.mark.skipif(ROOT and not probe()["mount_ns"], reason="no mount namespaces here")
def test_tenant_b_code_cannot_reach_a_facet_files(world: World) -> None:
    world.call({"op": "write", "facet": "secret", "tag": "x"})
    host = world.server.data_dir / "facets" / world.a_account
    got = world.call(
        {
            "op": "probe",
            "paths": [
                str(host / "secret" / "db.sqlite"),
                f"/var/treadle/facets/../{world.a_account}/secret/db.sqlite",
                "/var/treadle/facets/secret/db.sqlite",
            ],
        },
        tenant="b",
    )
    assert "secret" in got["facets_dir"]  # its own, made by its read above
    assert got["paths"][str(host / "secret" / "db.sqlite")] == "ENOENT"
    assert got["paths"][f"/var/treadle/facets/../{world.a_account}/secret/db.sqlite"] == "ENOENT"
    # Its own facet file is readable; the directory of facets is not its to write.
    assert got["paths"]["/var/treadle/facets/secret/db.sqlite"].startswith("SQLite format 3")
    assert got["mkdir"] == "EACCES"


def test_quotas_refuse_a_facet_too_many_and_a_write_too_large(world: World) -> None:
    status, _ = v1(
        world.server,
        "PATCH",
        f"/v1/tenants/{world.b_account}",
        {"quotas": {"maxFacets": 2, "maxFacetBytes": 64 * 1024}},
        credentials=world.admin,
    )
    assert status == 200
    got = world.call({"op": "fill", "facet": "small"}, tenant="b")
    assert got["full"]["type"] == "FacetFull" and got["full"]["operational"], got
    assert "full" in got["full"]["message"]
    assert got["integrity"] == "ok" and got["count"] > 1
    status, body = v1(world.server, "GET", "/v1/facets", credentials=world.b_keys)
    sizes = {f["name"]: f["sizeBytes"] for f in body["facets"]}
    # The database within its quota, its log about as much (checkpointed at that size).
    assert sizes["small"] <= 2 * 64 * 1024 + 4 * 4096, sizes
    # "secret" and "small" exist: a third is refused, an existing one still opens.
    got = world.call({"op": "write", "facet": "third", "tag": "t"}, tenant="b")
    assert got["refused"] == "ServiceQuotaExceededException", got
    assert "quota of 2 facets" in got["message"]
    assert "error" in world.call({"op": "read", "facet": "secret"}, tenant="b")
