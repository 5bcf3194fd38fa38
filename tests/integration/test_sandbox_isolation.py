"""Tenant code in the sandbox reads nothing of the platform's nor of other tenants' code.

Through a real `treadle dev` and boto3, two tenants (the default one, A, and B created
by the admin) deploy the same probe; its handler tries to read the platform's database,
keys, credentials file and the other tenant's unpacked code, and reports who it runs as
and what its environment holds. A durable workflow shows that what handlers need
(bundled modules, lazily imported stdlib, boto3, /tmp, SDK steps) still works.

As root (CI), workers run as per-tenant uids in a mount namespace that hides the data
directory; unprivileged, Landlock does the hiding. The uid assertions need root; the
read assertions need root or Landlock. Both are skipped, with the reason, otherwise.
"""

from __future__ import annotations

import io
import json
import os
import stat
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, v1
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.sandbox import LocalSandbox, SandboxFunction
from treadle.adapters.sandbox.confine import probe
from treadle.adapters.sandbox.hardening import protect_data_dir
from treadle.adapters.sandbox.identity import UID_BASE, UID_LIMIT
from treadle.adapters.sandbox.landlock import abi_version
from treadle.tenancy.credentials import read_profile

ROOT = os.geteuid() == 0
NEW_ROOT = ROOT and bool(probe()["mount_ns"])
LANDLOCK = abi_version() > 0
needs_root = pytest.mark.skipif(not ROOT, reason="per-tenant uids need the platform to be root")
needs_confinement = pytest.mark.skipif(
    not ROOT and not LANDLOCK,
    reason="neither root (tenant uids) nor Landlock: isolation is by environment only",
)

PROBE = """
import os

MARKER = "probe-code-marker"

def handler(event, context):
    reads = {}
    for path in event["paths"]:
        try:
            with open(path, "rb") as f:
                reads[path] = "read:" + f.read(256).decode("latin-1")
        except OSError as exc:
            reads[path] = type(exc).__name__
    listings = {}
    for path in event["dirs"]:
        try:
            listings[path] = sorted(os.listdir(path))
        except OSError as exc:
            listings[path] = type(exc).__name__
    try:
        with open(os.path.join(event["data_dir"], "planted"), "w") as f:
            f.write("tenant was here")
        planted = "written"
    except OSError as exc:
        planted = type(exc).__name__
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "env": dict(os.environ),
        "reads": reads,
        "listings": listings,
        "planted": planted,
        "caps": {k: v.strip() for k, v in status.items() if k.startswith("Cap")},
        "no_new_privs": status.get("NoNewPrivs", "").strip(),
        "code_dir": os.getcwd(),
    }
"""

WORKFLOW = """
import os, tempfile

import boto3
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.lambda_service import LambdaClient

import helper  # bundled with the function


@durable_step
def note(step_ctx, text):
    path = os.path.join(tempfile.gettempdir(), "note.txt")
    with open(path, "w") as f:
        f.write(text)
    with open(path) as f:
        return f.read()


@durable_execution
def handler(event, context: DurableContext):
    written = context.step(note(helper.greet(event["name"])), name="note")
    import csv, sqlite3, xml.dom.minidom  # not preloaded by the zygote: read from disk now
    region = boto3.client("lambda").meta.region_name
    again = context.step(lambda _: open(os.path.join(os.environ["TMPDIR"], "note.txt")).read())
    return {"written": written, "again": again, "region": region, "uid": os.getuid(),
            "tmp": tempfile.gettempdir(), "csv": csv.__name__,
            "transport": type(LambdaClient._cached_boto_client).__module__}
"""

HELPER = "def greet(name):\n    return f'hello {name}'\n"


class Tenants:
    def __init__(self, server: ServerProcess) -> None:
        self.data = server.data_dir
        admin = server.credentials("treadle-admin")
        status, body = v1(server, "POST", "/v1/tenants", {"name": "tenant-b"}, credentials=admin)
        assert status == 201, body
        b_keys = (body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"])
        self.a = client(server)
        self.b = client(server, credentials=b_keys)
        # The same zip for both: the code store must still keep one copy per tenant.
        self.a_account = deploy(self.a, "probe", {"handler.py": PROBE}, durable=False)[
            "FunctionArn"
        ].split(":")[4]
        self.b_account = deploy(self.b, "probe", {"handler.py": PROBE}, durable=False)[
            "FunctionArn"
        ].split(":")[4]
        assert self.a_account != self.b_account
        self.a_first = self.probe(self.a)  # unpacks A's copy
        self.a_code = Path(self.a_first["code_dir"])

    def probe(
        self, lam: Any, paths: Sequence[Path] = (), dirs: Sequence[Path] = ()
    ) -> dict[str, Any]:
        event = {
            "paths": [str(p) for p in paths],
            "dirs": [str(d) for d in dirs],
            "data_dir": str(self.data),
        }
        resp = lam.invoke(FunctionName="probe", Payload=json.dumps(event))
        got: dict[str, Any] = json.loads(resp["Payload"].read())
        assert "FunctionError" not in resp, got
        return got


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("isolation") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tenants(server: ServerProcess) -> Tenants:
    return Tenants(server)


def _platform_files(data: Path) -> list[Path]:
    files = [
        data / "treadle.db",
        data / "logs.db",
        data / "tenants.db",
        data / "credentials",
        data / "secrets" / "token.key",
        data / "secrets" / "admin.key",
    ]
    present = [p for p in files if p.exists()]
    # The ones the task names exist once `treadle dev` runs: a renamed file must not
    # make this test vacuous.
    for must in ("treadle.db", "credentials", "token.key"):
        assert any(p.name == must for p in present), f"{must} is missing from {data}"
    return present


@needs_confinement
def test_handler_cannot_read_the_platforms_files(tenants: Tenants) -> None:
    data = tenants.data
    files = _platform_files(data)
    got = tenants.probe(tenants.b, files, [data, data / "secrets", data / "code" / "unpacked"])
    for path in files:
        assert not got["reads"][str(path)].startswith("read:"), f"{path} was readable"
        assert got["reads"][str(path)] in ("PermissionError", "FileNotFoundError")
    # Nothing of the data directory can be listed: at most the way to its own files.
    for listing in got["listings"].values():
        assert isinstance(listing, str) or not {"treadle.db", "secrets", "credentials"} & set(
            listing
        ), got["listings"]
    assert got["planted"] != "written"
    assert not (data / "planted").exists()


@needs_confinement
def test_handler_cannot_read_another_tenants_code(tenants: Tenants) -> None:
    a_code = tenants.a_code
    assert (a_code / "handler.py").read_text() == PROBE  # the platform can
    assert tenants.a_account in a_code.parts
    got = tenants.probe(tenants.b, [a_code / "handler.py"], [a_code, a_code.parent])
    assert got["reads"][str(a_code / "handler.py")] in ("PermissionError", "FileNotFoundError")
    assert all(isinstance(v, str) for v in got["listings"].values()), got["listings"]
    # B runs from a copy of its own, although both deployed the very same zip.
    b_code = Path(got["code_dir"])
    assert b_code != a_code and b_code.name == a_code.name
    assert tenants.b_account in b_code.parts
    own = tenants.probe(tenants.b, [b_code / "handler.py"])
    assert own["reads"][str(b_code / "handler.py")].startswith("read:")


def test_environment_holds_no_platform_secret(tenants: Tenants) -> None:
    data = tenants.data
    env: dict[str, str] = tenants.probe(tenants.b)["env"]
    assert not [k for k in env if k.startswith("TREADLE")], env
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        assert name not in env
    secrets: list[str] = []
    for profile in ("treadle", "treadle-admin"):
        found = read_profile(data / "credentials", profile)
        assert found is not None
        secrets.append(found["aws_secret_access_key"])
    token = (data / "secrets" / "token.key").read_bytes()
    secrets += [token.hex(), token.decode("latin-1")]
    blob = "\n".join(f"{k}={v}" for k, v in env.items())
    for secret in secrets:
        assert secret not in blob
    for value in env.values():
        assert "secrets" not in Path(value).parts and not value.endswith("credentials")


@needs_root
def test_each_tenant_runs_as_its_own_unprivileged_uid(tenants: Tenants) -> None:
    a = tenants.a_first
    b = tenants.probe(tenants.b)
    for got in (a, b):
        assert UID_BASE <= got["uid"] < UID_LIMIT
        assert got["gid"] == got["uid"] and got["groups"] == []
        assert all(int(v, 16) == 0 for v in got["caps"].values()), got["caps"]
        assert got["no_new_privs"] == "1"
    assert a["uid"] != b["uid"]
    # A's copy of the code: its group's to read, nobody else's; read-only even to A.
    for path in [tenants.a_code, *tenants.a_code.rglob("*")]:
        st = path.stat()
        assert st.st_uid == 0 and st.st_gid == a["gid"]
        assert stat.S_IMODE(st.st_mode) & 0o227 == 0, oct(st.st_mode)


def test_durable_workflow_still_works(tenants: Tenants) -> None:
    deploy(tenants.b, "workflow", {"handler.py": WORKFLOW, "helper.py": HELPER})
    resp = tenants.b.invoke(FunctionName="workflow", Payload=json.dumps({"name": "b"}))
    got = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, got
    assert got["written"] == got["again"] == "hello b"
    assert got["region"] == "us-east-1" and got["csv"] == "csv"
    # Checkpoints went over the worker's channel, although its switch is not in the env.
    assert got["transport"] == "treadle.adapters.sandbox.durable_channel"
    if NEW_ROOT:  # the environment's tmpfs, mounted at /tmp in the worker's own root
        assert got["tmp"] == "/tmp"
    else:
        assert Path(got["tmp"]).is_relative_to(tenants.data / "sandbox")
    if ROOT:
        assert got["uid"] >= UID_BASE


def test_protect_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "secrets").mkdir(parents=True)
    (data / "secrets" / "token.key").write_bytes(b"k")
    for name in ("treadle.db", "treadle.db-wal", "credentials", "lock"):
        (data / name).write_text("x")
    for name in ("code", "sandbox", "git"):
        (data / name).mkdir()
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    umask = os.umask(0o022)
    try:
        protect_data_dir(data)
        assert os.umask(0o022) == 0o077  # later files are private too
    finally:
        os.umask(umask)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(data) == 0o711  # passable (to code/, sandbox/), not listable
    assert mode(data / "secrets") == mode(data / "git") == 0o700
    assert mode(data / "code") == mode(data / "sandbox") == 0o711
    for name in ("treadle.db", "treadle.db-wal", "credentials", "lock"):
        assert mode(data / name) == 0o600


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@pytest.mark.skipif(not LANDLOCK, reason="the kernel has no Landlock")
def test_unprivileged_platform_confines_with_landlock(tmp_path: Path) -> None:
    """What a developer's (non-root) platform does, forced here even when root."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "treadle.db").write_text("platform")
    code = LocalCodeStore(data / "code")
    key = code.put(_zip({"handler.py": PROBE}))
    other = code.unpacked(key, "111111111111")
    mine = code.unpacked(key, "222222222222")
    sandbox = LocalSandbox(work_dir=data / "sandbox", privileged=False)
    sandbox.start()
    try:
        fn = SandboxFunction(
            key=f"222222222222/probe/1/{uuid.uuid4().hex}",
            code_dir=mine,
            handler="handler.handler",
            function_name="probe",
            function_version="1",
            invoked_function_arn="arn:aws:lambda:us-east-1:222222222222:function:probe:1",
            memory_mb=256,
            timeout_s=10.0,
            environment={},
            log_group="/aws/lambda/probe",
            tenant="222222222222",
        )
        event = {
            "paths": [str(data / "treadle.db"), str(other / "handler.py")],
            "dirs": [str(data)],
            "data_dir": str(data),
        }
        outcome = sandbox.invoke(fn, json.dumps(event).encode(), str(uuid.uuid4()))
    finally:
        sandbox.close()
    assert outcome.error is None and outcome.payload is not None, outcome
    got = json.loads(outcome.payload)
    assert got["no_new_privs"] == "1"
    assert all(v == "PermissionError" for v in got["reads"].values()), got["reads"]
    assert got["listings"][str(data)] == "PermissionError"
    assert got["planted"] == "PermissionError" and not (data / "planted").exists()


FACET_WRITER = """
from treadle_facets import connect

def handler(event, context):
    db = connect("notes")
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS notes(t TEXT)")
        db.execute("INSERT INTO notes VALUES ('landlocked')")
    return db.execute("SELECT count(*) FROM notes").fetchone()[0]
"""


@pytest.mark.skipif(not LANDLOCK, reason="the kernel has no Landlock")
def test_an_unprivileged_worker_writes_its_facet_under_landlock(tmp_path: Path) -> None:
    """Single-tenant mode: the worker uses the host directory, which Landlock allows."""
    from treadle.adapters.sqlite.facets import SqliteFacetStore
    from treadle.api.channel import FacetChannel
    from treadle.facets import FacetGrant

    data = tmp_path / "data"
    data.mkdir()
    code = LocalCodeStore(data / "code")
    key = code.put(_zip({"handler.py": FACET_WRITER}))
    store = SqliteFacetStore(data / "facets")
    tenant = "222222222222"

    class Grants:  # the use case's answer, within no quota but the store
        def open(self, t: str, name: str) -> FacetGrant:
            store.create(t, name)
            return FacetGrant(name=name, max_bytes=1 << 20)

    channel = FacetChannel(Grants())  # type: ignore[arg-type]
    sandbox = LocalSandbox(work_dir=data / "sandbox", privileged=False)
    sandbox.serve_facets(store.tenant_dir)
    sandbox.start()
    try:
        fn = SandboxFunction(
            key=f"{tenant}/notes/1/{uuid.uuid4().hex}",
            code_dir=code.unpacked(key, tenant),
            handler="handler.handler",
            function_name="notes",
            function_version="1",
            invoked_function_arn=f"arn:aws:lambda:us-east-1:{tenant}:function:notes:1",
            memory_mb=256,
            timeout_s=10.0,
            environment={},
            log_group="/aws/lambda/notes",
            tenant=tenant,
        )
        outcomes = [
            sandbox.invoke(fn, b"{}", str(uuid.uuid4()), lambda op, body: channel(tenant, body))
            for _ in range(2)
        ]
    finally:
        sandbox.close()
    assert [json.loads(o.payload or b"null") for o in outcomes] == [1, 2], outcomes
    assert [f.name for f in store.list(tenant)] == ["notes"]
