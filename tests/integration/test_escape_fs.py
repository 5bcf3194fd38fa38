"""Tenant code sees a filesystem of its own: nothing of the host's but what a runtime needs.

Two tenants' functions (A and B) run side by side in one local sandbox, as the platform
runs them (root: own uids, own root, own /tmp tmpfs). B's handler attacks: it reads A's
/tmp, the host's /tmp and other world-readable host files, the server's /proc entries,
lists /proc, writes outside /tmp and fills /tmp past its EphemeralStorage; each attack
is judged from what the handler reports. The positive side: /tmp works, boto3 and the
durable SDK import, the handler finds its own code.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

import treadle
from support.server import deploy
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.sandbox import LocalSandbox, SandboxFunction
from treadle.adapters.sandbox.confine import probe
from treadle.adapters.sandbox.mounts import under

ROOT = os.geteuid() == 0
pytestmark = [
    pytest.mark.skipif(not ROOT, reason="a worker's own root needs the platform to be root"),
    pytest.mark.skipif(
        ROOT and not probe()["mount_ns"], reason="no mount namespaces here (CAP_SYS_ADMIN?)"
    ),
]

PROBE = """
import errno, json, os

def _try(fn):
    try:
        return fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__)

def _read(path):
    with open(path, "rb") as f:
        return "read:" + f.read(64).decode("latin-1")

def _write(path, data=b"x"):
    with open(path, "wb") as f:
        f.write(data)
    return "written"

def _fill(path, mib):
    chunk = b"\\0" * (1 << 20)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(chunk)
            f.flush()
    return "written"

def handler(event, context):
    out = {"pid": os.getpid(), "uid": os.getuid(), "tmpdir": os.environ.get("TMPDIR")}
    out["reads"] = {p: _try(lambda p=p: _read(p)) for p in event.get("read", [])}
    out["lists"] = {p: _try(lambda p=p: sorted(os.listdir(p))) for p in event.get("list", [])}
    out["writes"] = {p: _try(lambda p=p: _write(p)) for p in event.get("write", [])}
    if "fill" in event:
        out["fill"] = _try(lambda: _fill("/tmp/fill", event["fill"]))
        os.remove("/tmp/fill")
        st = os.statvfs("/tmp")
        out["tmp_size_mib"] = st.f_blocks * st.f_frsize >> 20
    if event.get("runtime"):
        import boto3, aws_durable_execution_sdk_python
        root = os.environ["LAMBDA_TASK_ROOT"]
        out["own_code"] = _try(lambda: _read(os.path.join(root, "handler.py")))
        out["cwd"] = os.getcwd()
        out["boto3"] = boto3.client("lambda", region_name="us-east-1").meta.region_name
        out["sdk"] = aws_durable_execution_sdk_python.__name__
    return out
"""


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


@dataclass
class Env:
    sandbox: LocalSandbox
    data: Path
    outside: Path  # a tmp directory of the test, outside the data directory
    a: SandboxFunction
    b: SandboxFunction

    def run(self, fn: SandboxFunction, **event: Any) -> dict[str, Any]:
        outcome = self.sandbox.invoke(fn, json.dumps(event).encode(), str(uuid.uuid4()))
        assert outcome.error is None and outcome.payload is not None, (outcome, outcome.logs)
        got: dict[str, Any] = json.loads(outcome.payload)
        return got


def _function(
    code: LocalCodeStore, sandbox: LocalSandbox, key: str, account: str
) -> SandboxFunction:
    return SandboxFunction(
        key=f"{account}/probe/1/{uuid.uuid4().hex}",
        code_dir=code.unpacked(key, account, group=sandbox.tenant_group(account)),
        handler="handler.handler",
        function_name="probe",
        function_version="1",
        invoked_function_arn=f"arn:aws:lambda:us-east-1:{account}:function:probe:1",
        memory_mb=256,
        timeout_s=30.0,
        environment={},
        log_group="/aws/lambda/probe",
        tenant=account,
    )


# "spare": each tenant ran code before, so its functions start from a spare confined
# for it ahead (`spares.TenantSpares`): every attack below is made from such a worker too.
# "spare-var": the same with the data directory outside /tmp, as in production (a test's
# data directory is under /tmp, where a spare's code goes another way: `rootfs`).
@pytest.fixture(scope="module", params=["fresh", "spare", "spare-var"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if request.param == "spare-var":
        base = Path(tempfile.mkdtemp(prefix="escape-fs-", dir="/var/tmp"))
        request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    else:
        base = tmp_path_factory.mktemp("escape-fs")
    data = base / "data"
    data.mkdir()
    outside = base / "outside"
    outside.mkdir()
    code = LocalCodeStore(data / "code")
    key = code.put(_zip({"handler.py": PROBE}))
    sandbox = LocalSandbox(work_dir=data / "sandbox")
    sandbox.start()
    try:
        a = _function(code, sandbox, key, "111111111111")
        b = _function(code, sandbox, key, "222222222222")
        env = Env(sandbox, data, outside, a, b)
        if request.param != "fresh":
            _from_spares(env, code, key)
        yield env
    finally:
        sandbox.close()


def _from_spares(env: Env, code: LocalCodeStore, key: str) -> None:
    """Each tenant runs another function first; then A's and B's own start from spares."""
    for account in ("111111111111", "222222222222"):
        env.run(_function(code, env.sandbox, key, account))
    deadline = time.monotonic() + 30
    while len(env.sandbox.tenant_spares()[0]) < 2:
        assert time.monotonic() < deadline, "no spare was confined for the tenants"
        time.sleep(0.02)
    served = env.sandbox.tenant_spares()[1]
    assert env.run(env.a)["uid"] != env.run(env.b)["uid"]
    assert env.sandbox.tenant_spares()[1] == served + 2


def _host_tmp(env: Env, fn: SandboxFunction) -> Path:
    return Path(env.sandbox._tmps.path(fn.key))


def test_another_tenants_tmp_is_out_of_reach(env: Env) -> None:
    secret = "a-secret-" + uuid.uuid4().hex
    a = env.run(env.a, write=[f"/tmp/{secret}"])
    assert a["writes"][f"/tmp/{secret}"] == "written"
    a_tmp = _host_tmp(env, env.a)
    assert (a_tmp / secret).exists()  # where the platform keeps it
    got = env.run(env.b, read=[f"/tmp/{secret}", str(a_tmp / secret)], list=[str(a_tmp), "/tmp"])
    assert set(got["reads"].values()) == {"ENOENT"}, got["reads"]
    assert got["lists"][str(a_tmp)] == "ENOENT"
    assert secret not in json.dumps(got["lists"])


def test_host_files_outside_the_allow_list_do_not_exist(env: Env) -> None:
    name = "planted-" + uuid.uuid4().hex
    planted = [env.outside / name, Path("/tmp") / name, Path("/var/tmp") / name]
    for path in planted:
        path.write_text("host secret")
        path.chmod(0o644)  # world-readable: only the tree can keep it out
    try:
        dirs = ["/", "/tmp", "/etc", "/dev", str(env.outside), "/var/tmp", "/home", "/root"]
        got = env.run(env.b, read=[*map(str, planted), "/etc/shadow"], list=dirs)
    finally:
        for path in planted:
            path.unlink()
    assert set(got["reads"].values()) == {"ENOENT"}, got["reads"]
    lists = got["lists"]
    assert name not in json.dumps(lists)
    # The code's own path is shown (LAMBDA_TASK_ROOT stays valid): its directories only.
    code_path = env.b.code_dir.resolve().parts
    host_dirs = {"home", "opt", "srv", "var", "mnt", "boot"} - {code_path[1]}
    assert not host_dirs & set(lists["/"]), lists["/"]
    for gone in (str(env.outside), "/var/tmp", "/home"):
        if under(str(env.b.code_dir.resolve()), gone):
            # Only the way to the code: the outside dir, its sibling, is not there.
            assert lists[gone] == [code_path[len(Path(gone).parts)]], (gone, lists[gone])
            continue
        assert lists[gone] == "ENOENT", (gone, lists[gone])
    assert "shadow" not in lists["/etc"] and "passwd" in lists["/etc"]
    assert set(lists["/dev"]) <= {
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "fd",
        "stdin",
        "stdout",
        "stderr",
    }
    # /tmp is the environment's own: at most the way to its code and runtime (when the
    # data directory or the checkout with its venv is under /tmp, as in tests and CI),
    # never the host's entries.
    shown = [env.data, Path(sys.prefix), Path(treadle.__file__).parent, Path(sys.executable)]
    ways = {p.resolve().parts[2] for p in shown if p.resolve().parts[1:2] == ("tmp",)}
    assert set(lists["/tmp"]) <= ways | {"mine"}, lists["/tmp"]


def test_proc_shows_only_the_tenants_own_processes(env: Env) -> None:
    a = env.run(env.a)  # A's worker stays warm, alive, under A's uid
    server = os.getpid()
    zygote = env.sandbox._zygote.pid if env.sandbox._zygote else server
    got = env.run(
        env.b,
        read=[f"/proc/{server}/environ", f"/proc/{server}/cmdline", f"/proc/{a['pid']}/environ"],
        list=["/proc"],
    )
    assert set(got["reads"].values()) == {"ENOENT"}, got["reads"]
    pids = {int(p) for p in got["lists"]["/proc"] if p.isdigit()}
    assert got["pid"] in pids
    assert not {server, zygote, a["pid"], 1} & pids, pids
    # The server can still see both (the platform's view is untouched).
    assert Path(f"/proc/{a['pid']}").exists() and Path(f"/proc/{got['pid']}").exists()


def test_nothing_outside_tmp_is_writable(env: Env) -> None:
    code = str(env.b.code_dir)
    targets = [
        f"{code}/handler.py",
        f"{code}/new.py",
        "/new",
        "/usr/new",
        "/etc/passwd",
        "/dev/new",
    ]
    got = env.run(env.b, write=targets)
    for path in targets:
        assert got["writes"][path] in ("EROFS", "EACCES", "EPERM"), (path, got["writes"][path])
    assert "new.py" not in os.listdir(code)


def test_tmp_is_limited_to_ephemeral_storage(env: Env) -> None:
    small = replace(env.b, key=f"222222222222/small/1/{uuid.uuid4().hex}", ephemeral_storage_mb=8)
    got = env.run(small, fill=9)
    assert got["fill"] == "ENOSPC"
    assert got["tmp_size_mib"] == 8
    env.sandbox.evict(small.key)


def test_environment_tmp_goes_with_the_environment(env: Env) -> None:
    fn = replace(env.a, key=f"111111111111/gone/1/{uuid.uuid4().hex}")
    assert env.run(fn, write=["/tmp/left-behind"])["writes"]["/tmp/left-behind"] == "written"
    host = _host_tmp(env, fn)
    assert (host / "left-behind").exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f" {host} " in mounts  # a tmpfs of its own while the environment lives
    env.sandbox.evict(fn.key)
    assert not host.exists()
    assert f" {host} " not in Path("/proc/self/mountinfo").read_text()
    again = env.run(fn, read=["/tmp/left-behind"])
    assert again["reads"]["/tmp/left-behind"] == "ENOENT"
    env.sandbox.evict(fn.key)


def test_what_a_handler_needs_still_works(env: Env) -> None:
    assert env.run(env.b, write=["/tmp/mine"])["writes"]["/tmp/mine"] == "written"
    got = env.run(env.b, read=["/tmp/mine"], runtime=True)  # the next invocation
    assert got["reads"]["/tmp/mine"] == "read:x"
    assert got["tmpdir"] == "/tmp"
    assert got["own_code"].startswith("read:") and got["cwd"] == str(env.b.code_dir)
    assert got["boto3"] == "us-east-1" and got["sdk"] == "aws_durable_execution_sdk_python"


def test_platform_sizes_tmp_by_the_functions_ephemeral_storage(lam: Any) -> None:
    deploy(lam, "eph", {"handler.py": PROBE}, durable=False, EphemeralStorage={"Size": 600})
    resp = lam.invoke(FunctionName="eph", Payload=json.dumps({"fill": 0}))
    got = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, got
    assert got["tmp_size_mib"] == 600 and got["tmpdir"] == "/tmp"
