"""Versioned code delivery end to end, through a real `treadle dev`.

- every upload lands in the tenant's `functions` repository under `functions/<name>/`
  (read back over /v1 and with a real `git clone`);
- a published version records that commit and the code's SHA-256 (GetFunction shows
  both, to boto3 as `treadle:` tags and in the raw JSON);
- `POST /v1/functions/<name>/deploy` publishes a version from any ref of a repository
  pushed with the `git` CLI;
- an execution runs only the version it started on, qualified or not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from support.server import ServerProcess, deploy, signed, zip_files

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

PLAIN = """
from lib.message import TEXT


def handler(event, context):
    return TEXT
"""


def _http(
    server: ServerProcess, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    req = urllib.request.Request(
        server.url + path, data=body or None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _v1(server: ServerProcess, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    """A /v1 call with Basic auth as the default tenant; JSON decoded when it is JSON."""
    key, secret = server.credentials()
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    headers = {"authorization": f"Basic {token}"}
    body = b""
    if payload is not None:
        body = json.dumps(payload).encode()
        headers["content-type"] = "application/json"
    status, raw = _http(server, method, path, body, headers)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def _blob(server: ServerProcess, path: str, ref: str = "main") -> tuple[int, Any]:
    return _v1(server, "GET", f"/v1/repos/functions/blob?ref={ref}&path={quote(path)}")


def _tip(server: ServerProcess, repo: str = "functions") -> str:
    status, info = _v1(server, "GET", f"/v1/repos/{repo}")
    assert status == 200, info
    return str(info["refs"]["refs/heads/main"])


def _raw_get_function(server: ServerProcess, name: str, qualifier: str) -> dict[str, Any]:
    """GetFunction's JSON as sent, before botocore drops what its model lacks."""
    path = f"/2015-03-31/functions/{name}?Qualifier={quote(qualifier)}"
    status, raw = _http(server, "GET", path, b"", signed(server, "GET", path))
    assert status == 200, raw
    return json.loads(raw)  # type: ignore[no-any-return]


def _sha256(package: bytes) -> str:
    return base64.b64encode(hashlib.sha256(package).digest()).decode()


def _git_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }


def _git(env: dict[str, str], cwd: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    cmd += ["-c", "init.defaultBranch=main", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip()


def _git_url(server: ServerProcess, account: str, repo: str) -> str:
    key, secret = (quote(part, safe="") for part in server.credentials())
    host = server.url.removeprefix("http://")
    return f"http://{key}:{secret}@{host}/git/{account}/{repo}.git"


def _account(lam: Any, name: str) -> str:
    return str(lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"].split(":")[4])


@needs_git
def test_uploads_are_committed_and_versions_record_commit_and_code_sha(
    server: ServerProcess, lam: Any, tmp_path: Path
) -> None:
    v1 = {"handler.py": PLAIN, "lib/message.py": "TEXT = 'one'\n", "notes.txt": "drop me"}
    deploy(lam, "mirrored", v1, durable=False)
    status, body = _blob(server, "functions/mirrored/handler.py")
    assert (status, body) == (200, PLAIN.encode())
    created = _tip(server)

    # A real clone sees the same tree.
    env = _git_env(tmp_path)
    account = _account(lam, "mirrored")
    _git(env, tmp_path, "clone", "-q", _git_url(server, account, "functions"), "clone")
    checkout = tmp_path / "clone" / "functions" / "mirrored"
    assert sorted(p.name for p in checkout.iterdir()) == ["handler.py", "lib", "notes.txt"]
    assert (checkout / "lib" / "message.py").read_text() == "TEXT = 'one'\n"

    package = zip_files({"handler.py": PLAIN, "lib/message.py": "TEXT = 'two'\n"})
    lam.update_function_code(FunctionName="mirrored", ZipFile=package)
    updated = _tip(server)
    assert updated != created
    assert _blob(server, "functions/mirrored/notes.txt")[0] == 404  # removed from the zip
    assert _blob(server, "functions/mirrored/notes.txt", ref=created)[1] == b"drop me"
    status, log = _v1(server, "GET", "/v1/repos/functions/commits?limit=1")
    hexdigest = hashlib.sha256(package).hexdigest()
    assert log["commits"][0]["message"].startswith(
        f"UpdateFunctionCode mirrored (sha256 {hexdigest})"
    )

    version = lam.publish_version(FunctionName="mirrored")["Version"]
    got = lam.get_function(FunctionName="mirrored", Qualifier=version)
    assert got["Configuration"]["CodeSha256"] == _sha256(package)
    assert got["Tags"]["treadle:commit-sha"] == updated
    assert got["Tags"]["treadle:code-sha256"] == _sha256(package)
    assert got["Tags"]["treadle:path"] == "functions/mirrored/"
    raw = _raw_get_function(server, "mirrored", version)
    assert raw["Treadle"] == {
        "Repository": "functions",
        "Path": "functions/mirrored/",
        "CommitSha": updated,
        "CodeSha256": _sha256(package),
    }
    assert raw["Code"]["RepositoryType"] == "S3"

    status, listed = _v1(server, "GET", "/v1/functions/mirrored/versions")
    assert status == 200
    shas = {v["version"]: (v["commitSha"], v["codeSha256"]) for v in listed["versions"]}
    assert shas == {"$LATEST": (updated, _sha256(package)), version: (updated, _sha256(package))}

    # Uploading the same code again adds no commit; new code does not touch the version.
    lam.update_function_code(FunctionName="mirrored", ZipFile=package)
    assert _tip(server) == updated
    lam.update_function_code(FunctionName="mirrored", ZipFile=zip_files(v1))
    assert lam.get_function(FunctionName="mirrored", Qualifier=version)["Tags"] == got["Tags"]
    out = lam.invoke(FunctionName="mirrored", Qualifier=version)["Payload"].read()
    assert json.loads(out) == "two"

    lam.delete_function(FunctionName="mirrored")
    assert _blob(server, "functions/mirrored/handler.py")[0] == 404


def test_bad_packages_are_refused_before_git(server: ServerProcess, lam: Any) -> None:
    before = _v1(server, "GET", "/v1/repos/functions")[1].get("refs")
    for package, message in [
        (zip_files({"../escape.py": "x"}), "Unsafe path"),
        (zip_files({".git/config": "x"}), ".git"),
        (b"PK not really", "Could not unzip"),
    ]:
        with pytest.raises(ClientError) as err:
            deploy(lam, "refused", {"handler.py": PLAIN}, Code={"ZipFile": package})
        assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert message in err.value.response["Error"]["Message"]
    assert _v1(server, "GET", "/v1/repos/functions")[1].get("refs") == before


@needs_git
def test_deploy_from_a_pushed_ref(server: ServerProcess, lam: Any, tmp_path: Path) -> None:
    status, _ = _v1(server, "POST", "/v1/repos", {"name": "app-src"})
    assert status == 201
    deploy(lam, "account-probe", {"handler.py": PLAIN}, durable=False)
    account = _account(lam, "account-probe")
    env = _git_env(tmp_path)
    work = tmp_path / "work"
    (work / "svc" / "lib").mkdir(parents=True)
    (work / "README.md").write_text("not deployed\n")
    (work / "svc" / "handler.py").write_text(PLAIN)
    (work / "svc" / "lib" / "message.py").write_text("TEXT = 'from git 1'\n")
    _git(env, work, "init", "-q")
    _git(env, work, "add", "-A")
    _git(env, work, "commit", "-q", "-m", "first")
    first = _git(env, work, "rev-parse", "HEAD")
    _git(env, work, "push", "-q", _git_url(server, account, "app-src"), "main")

    body = {"repo": "app-src", "ref": "main", "path": "svc", "handler": "handler.handler"}
    status, version = _v1(server, "POST", "/v1/functions/from-git/deploy", body)
    assert status == 201, version
    assert version["version"] == "1" and version["functionName"] == "from-git"
    assert version["functionArn"].endswith(":function:from-git:1")
    assert version["source"] == {
        "repository": "app-src",
        "ref": "main",
        "path": "svc",
        "commitSha": first,
    }
    assert version["commitSha"] == _tip(server)
    assert _blob(server, "functions/from-git/lib/message.py")[1] == b"TEXT = 'from git 1'\n"
    assert _blob(server, "functions/from-git/README.md")[0] == 404
    out = lam.invoke(FunctionName="from-git", Qualifier="1")["Payload"].read()
    assert json.loads(out) == "from git 1"
    tags = lam.get_function(FunctionName="from-git", Qualifier="1")["Tags"]
    assert tags["treadle:source-commit-sha"] == first
    assert tags["treadle:source-repository"] == "app-src"
    assert tags["treadle:code-sha256"] == version["codeSha256"]

    (work / "svc" / "lib" / "message.py").write_text("TEXT = 'from git 2'\n")
    _git(env, work, "commit", "-q", "-am", "second")
    _git(env, work, "tag", "v2")
    _git(env, work, "push", "-q", _git_url(server, account, "app-src"), "main", "v2")
    body = {**body, "ref": "v2", "timeout": 30, "environment": {"STAGE": "two"}}
    status, second = _v1(server, "POST", "/v1/functions/from-git/deploy", body)
    assert status == 201, second
    assert second["version"] == "2" and second["source"]["ref"] == "v2"
    assert second["source"]["commitSha"] == _git(env, work, "rev-parse", "HEAD")
    config = lam.get_function_configuration(FunctionName="from-git", Qualifier="2")
    assert config["Timeout"] == 30 and config["Environment"]["Variables"] == {"STAGE": "two"}
    assert json.loads(lam.invoke(FunctionName="from-git", Qualifier="2")["Payload"].read()) == (
        "from git 2"
    )
    assert json.loads(lam.invoke(FunctionName="from-git", Qualifier="1")["Payload"].read()) == (
        "from git 1"
    )
    # The same tree and configuration again: the same version, as PublishVersion does.
    status, again = _v1(server, "POST", "/v1/functions/from-git/deploy", body)
    assert (status, again["version"], again["codeSha256"]) == (201, "2", second["codeSha256"])

    status, listed = _v1(server, "GET", "/v1/functions/from-git/versions")
    assert [v["version"] for v in listed["versions"]] == ["$LATEST", "1", "2"]
    assert listed["versions"][1]["source"]["commitSha"] == first


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"repo": "app-src", "ref": "nope"}, 404, "Ref 'nope' does not exist"),
        ({"repo": "app-src", "path": "missing"}, 404, "Path 'missing' does not exist"),
        ({"repo": "app-src", "path": "README.md"}, 400, "is not a directory"),
        ({"repo": "no-such-repo"}, 404, "Repository 'no-such-repo' does not exist"),
        ({"repo": "app-src", "bogus": 1}, 400, "bogus"),
        ({"repo": "app-src", "runtime": "python2.7"}, 400, "not supported"),
    ],
)
def test_deploy_refuses_bad_sources_precisely(
    server: ServerProcess, body: dict[str, Any], status: int, message: str
) -> None:
    # Idempotent set-up: the parametrized cases share the module's server.
    _v1(server, "POST", "/v1/repos", {"name": "app-src"})
    _v1(
        server,
        "POST",
        "/v1/repos/app-src/commits",
        {
            "message": "m",
            "files": {"README.md": {"content": "r"}, "svc/handler.py": {"content": PLAIN}},
        },
    )
    got, error = _v1(server, "POST", "/v1/functions/bad-deploy/deploy", {"handler": "h.h", **body})
    assert got == status, error
    assert message in error["error"]["message"]


PINNED = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step

MARK = "MARKER"


@durable_step
def marker(step_ctx):
    return MARK


@durable_execution
def handler(event, context: DurableContext):
    started = context.step(marker(), name="marker")
    answer = None
    if event.get("wait"):
        answer = context.wait_for_callback(lambda callback_id, ctx: None, name="resume")
    return {"started": started, "finished": MARK, "answer": answer}
"""


def _exec_arn(resp: dict[str, Any]) -> str:
    return str(resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])


def _callback_id(lam: Any, arn: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]:
            if e["EventType"] == "CallbackStarted":
                return str(e["CallbackStartedDetails"]["CallbackId"])
        time.sleep(0.05)
    raise AssertionError(f"{arn} started no callback")


def _result(lam: Any, arn: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        ex = lam.get_durable_execution(DurableExecutionArn=arn)
        if ex["Status"] != "RUNNING":
            assert ex["Status"] == "SUCCEEDED", ex
            return json.loads(ex["Result"])
        assert time.monotonic() < deadline, f"{arn} still running"
        time.sleep(0.05)


def test_an_execution_runs_only_the_version_it_started_on(lam: Any) -> None:
    """Start waiting executions, publish new code, resume them: they finish on the old
    code; new executions use the new code. Unqualified starts pin $LATEST's code."""
    deploy(lam, "pin-code", {"handler.py": PINNED.replace("MARKER", "old")})
    assert lam.publish_version(FunctionName="pin-code")["Version"] == "1"
    started = {
        qualifier: _exec_arn(
            lam.invoke(
                FunctionName="pin-code",
                InvocationType="Event",
                Payload=json.dumps({"wait": True}),
                **({"Qualifier": qualifier} if qualifier else {}),
            )
        )
        for qualifier in ("1", None)
    }
    callbacks = {q: _callback_id(lam, arn) for q, arn in started.items()}

    new_code = zip_files({"handler.py": PINNED.replace("MARKER", "new")})
    lam.update_function_code(FunctionName="pin-code", ZipFile=new_code)
    assert lam.publish_version(FunctionName="pin-code")["Version"] == "2"

    for callback in callbacks.values():
        lam.send_durable_execution_callback_success(CallbackId=callback, Result=b"go")
    for qualifier, arn in started.items():
        # Replayed on resume: `finished` is computed by the code that runs then.
        assert _result(lam, arn) == {"started": "old", "finished": "old", "answer": "go"}
        version = lam.get_durable_execution(DurableExecutionArn=arn)["Version"]
        assert version == (qualifier or "$LATEST")

    for kwargs in ({"Qualifier": "2"}, {}, {"Qualifier": "$LATEST"}):
        fresh = lam.invoke(FunctionName="pin-code", Payload=b"{}", **kwargs)
        assert json.loads(fresh["Payload"].read()) == {
            "started": "new",
            "finished": "new",
            "answer": None,
        }
    old = lam.invoke(FunctionName="pin-code", Qualifier="1", Payload=b"{}")
    assert json.loads(old["Payload"].read())["finished"] == "old"
