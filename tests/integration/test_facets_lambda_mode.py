"""`treadle_facets` where the facets are mounted rather than handed over a worker channel:
a tenant Lambda with its tenant's EFS access point. The module asks the platform to make
the facet (`POST /v1/facets/{name}`, with the function's own sandbox key) and opens the
file on the mount. Played here by a process given the same environment, the mount being
the tenant's facets directory of a real `treadle dev`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from support.server import ServerProcess, v1
from treadle.tenancy.sandbox_keys import SandboxKeys

ACCOUNT = "123456789012"
CODE = """
import json, sys
from treadle_facets import FacetError, connect
out = {}
db = connect(sys.argv[1])
with db:
    db.execute("CREATE TABLE IF NOT EXISTS t(n INTEGER)")
    db.execute("INSERT INTO t VALUES (1)")
out["rows"] = db.execute("SELECT count(*) FROM t").fetchone()[0]
out["journal"] = db.execute("PRAGMA journal_mode").fetchone()[0]
try:
    connect("../escape")
except FacetError as exc:
    out["bad_name"] = exc.args[0] if exc.args else str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("facets-http") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _lambda_env(server: ServerProcess) -> dict[str, str]:
    keys = SandboxKeys((server.data_dir / "secrets" / "token.key").read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TREADLE_"))}
    return {
        **env,
        **keys.env(ACCOUNT),
        "AWS_ENDPOINT_URL_LAMBDA": server.url,
        "TREADLE_FACETS_MOUNT_PATH": str(server.data_dir / "facets" / ACCOUNT),
    }


def test_a_mounted_facet_is_made_by_the_platform_then_opened_on_the_mount(
    server: ServerProcess,
) -> None:
    env = _lambda_env(server)
    for expected in (1, 2):  # made on first use, the same facet the second time
        done = subprocess.run(
            [sys.executable, "-c", CODE, "lambda-made"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["rows"] == expected
        assert out["bad_name"]  # refused by the platform, nothing made
    status, body = v1(server, "GET", "/v1/facets")
    assert status == 200
    assert [f["name"] for f in body["facets"]] == ["lambda-made"]
    assert body["facets"][0]["sizeBytes"] > 0


def test_the_sandbox_key_opens_facets_and_nothing_else_of_v1(server: ServerProcess) -> None:
    env = _lambda_env(server)
    key = (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    status, _ = v1(server, "POST", "/v1/facets/by-key", {}, credentials=key)
    assert status == 200
    for method, path in (("GET", "/v1/facets"), ("DELETE", "/v1/facets/by-key")):
        status, body = v1(server, method, path, credentials=key)
        assert status == 403, (method, path, body)
