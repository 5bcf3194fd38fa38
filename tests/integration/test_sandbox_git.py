"""An agent inside a workflow clones and pushes its tenant's repository with egress
`none`: its code mints a repository token with its sandbox key at the in-namespace
endpoint (127.0.0.1:9001) and uses dulwich's HTTP client against the same endpoint.

Through a real `treadle dev` as root (network namespaces); what the endpoint refuses
from inside is checked in the same run: the sandbox key or a leaked tenant key on Git,
the sandbox key on any other `/v1` route, another tenant's repository or token.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from typing import Any, cast

import pytest

from support.server import ServerProcess, client, deploy, new_tenant, v1
from treadle.adapters.sandbox import netns
from treadle.api import sandbox_endpoint
from treadle.api.app import Application
from treadle.api.http import Request, Response

needs_netns = pytest.mark.skipif(
    not (os.geteuid() == 0 and netns.available()),
    reason="network namespaces need the platform to be root (and a host that allows them)",
)

AGENT = """
import base64, io, json, os, shutil, urllib.error, urllib.request
from dulwich import porcelain
from dulwich.client import HTTPUnauthorized

EP = os.environ["AWS_ENDPOINT_URL_LAMBDA"]


def call(method, path, payload=None, key=None):
    key = key or (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    basic = base64.b64encode(f"{key[0]}:{key[1]}".encode()).decode()
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(EP + path, data=data, method=method, headers={
        "authorization": "Basic " + basic, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def git_url(user, password, account, repo):
    return f"http://{user}:{password}@127.0.0.1:9001/git/{account}/{repo}.git"


def refused(fn):
    try:
        fn()
    except HTTPUnauthorized:
        return "401"
    except Exception as exc:
        return type(exc).__name__ + ": " + str(exc)[:200]
    return "opened"


def handler(event, context):
    # The tenant's uid has no passwd entry: dulwich takes its reflog identity from here.
    os.environ.update(USER="agent", EMAIL="agent@example.com")
    account, repo = event["account"], event["repo"]
    status, minted = call("POST", f"/v1/repos/{repo}/tokens", {"access": "write"})
    report = {"mint": status}
    if status != 201:
        report["body"] = minted
        return report
    url = git_url("x-token", minted["token"], account, repo)
    work = "/tmp/work"
    shutil.rmtree(work, ignore_errors=True)
    porcelain.clone(url, work, checkout=True, errstream=io.BytesIO())
    report["cloned"] = sorted(n for n in os.listdir(work) if n != ".git")
    with open(os.path.join(work, "from-agent.txt"), "w") as f:
        f.write("written inside the sandbox")
    porcelain.add(work, [os.path.join(work, "from-agent.txt")])
    porcelain.commit(work, message=b"agent commit", author=b"Agent <a@x>",
                     committer=b"Agent <a@x>")
    porcelain.push(work, url, "refs/heads/main:refs/heads/main", errstream=io.BytesIO())
    report["pushed"] = True
    sandbox_key = (os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    report["git_with_sandbox_key"] = refused(
        lambda: porcelain.ls_remote(git_url(*sandbox_key, account, repo)))
    leaked = event["tenant_key"]
    report["git_with_tenant_key"] = refused(
        lambda: porcelain.ls_remote(git_url(*leaked, account, repo)))
    report["foreign_token"] = refused(
        lambda: porcelain.ls_remote(git_url("x-token", event["foreign_token"],
                                            event["foreign_account"], event["foreign_repo"])))
    report["list_repos"] = call("GET", "/v1/repos")[0]
    # A session's own repository: created by its code, as its tenant's; nothing else.
    report["create_repo"] = call("POST", "/v1/repos", {"name": repo + "-session"})[0]
    report["delete_repo"] = call("DELETE", f"/v1/repos/{repo}")[0]
    report["list_tokens"] = call("GET", f"/v1/repos/{repo}/tokens")[0]
    report["mint_with_tenant_key"] = call(
        "POST", f"/v1/repos/{repo}/tokens", {"access": "read"}, key=leaked)[0]
    report["mint_foreign_repo"] = call(
        "POST", f"/v1/repos/{event['foreign_only_repo']}/tokens", {"access": "read"})[0]
    return report
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("sandbox-git") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@needs_netns
def test_tenant_code_mints_a_token_and_clones_and_pushes_through_its_endpoint(
    server: ServerProcess,
) -> None:
    lam = client(server)
    b_account, b_keys = new_tenant(server, "git-b")
    assert v1(server, "POST", "/v1/repos", {"name": "work"})[0] == 201
    status, _ = v1(
        server,
        "POST",
        "/v1/repos/work/commits",
        {"message": "seed", "files": {"README.md": {"content": "task"}}},
    )
    assert status == 201
    account = v1(server, "GET", "/v1/repos/work")[1]["cloneUrl"].split("/")[-2]
    # B's repository and a valid token of B's: A's code must get nothing with it.
    assert v1(server, "POST", "/v1/repos", {"name": "b-only"}, credentials=b_keys)[0] == 201
    status, b_token = v1(
        server, "POST", "/v1/repos/b-only/tokens", {"access": "write"}, credentials=b_keys
    )
    assert status == 201
    deploy(lam, "agent", {"handler.py": AGENT}, durable=False, timeout=120)
    event: dict[str, Any] = {
        "account": account,
        "repo": "work",
        "tenant_key": list(server.credentials()),
        "foreign_token": b_token["token"],
        "foreign_account": b_account,
        "foreign_repo": "b-only",
        "foreign_only_repo": "b-only",
    }
    resp = lam.invoke(FunctionName="agent", Payload=json.dumps(event))
    payload = resp["Payload"].read()
    assert "FunctionError" not in resp, payload
    report = json.loads(payload)
    assert report["mint"] == 201, report
    assert report["cloned"] == ["README.md"] and report["pushed"] is True
    status, blob = v1(server, "GET", "/v1/repos/work/blob?ref=main&path=from-agent.txt")
    assert status == 200 and blob == b"written inside the sandbox"
    for name in ("git_with_sandbox_key", "git_with_tenant_key", "foreign_token"):
        assert report[name] == "401", (name, report[name])
    assert report["list_repos"] == 403 and report["list_tokens"] == 403
    assert report["create_repo"] == 201 and report["delete_repo"] == 403
    assert report["mint_with_tenant_key"] == 403
    assert report["mint_foreign_repo"] == 404  # its tenant has no repository of that name


class _Echo:
    """The application behind an endpoint: answers with the body's length and head."""

    max_request_bytes = 1024

    def handle_sandbox(self, request: Request, tenant: str) -> Response:
        return Response.json({"path": request.path, "length": len(request.body)})


def _exchange(port: int, head: bytes, body: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), 5) as conn:
        conn.sendall(head + body)
        response = http.client.HTTPResponse(conn)
        response.begin()
        return response.status, response.read()


def _chunked(data: bytes, size: int = 1000) -> bytes:
    parts = [
        f"{len(data[i : i + size]):x}\r\n".encode() + data[i : i + size] + b"\r\n"
        for i in range(0, len(data), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def test_the_endpoint_takes_pushes_whole_chunked_or_not_and_bounds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox_endpoint, "MAX_GIT_BYTES", 8000)
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    stop = sandbox_endpoint.SandboxEndpoints(cast(Application, _Echo()))("1" * 12, listening)
    push = b"POST /git/111111111111/r.git/git-receive-pack HTTP/1.1\r\nhost: a\r\n"
    api = b"POST /v1/repos/r/tokens HTTP/1.1\r\nhost: a\r\n"
    pack = bytes(range(256)) * 20  # 5,120 bytes: over the API's limit, under Git's
    try:
        chunked = push + b"transfer-encoding: chunked\r\n\r\n"
        assert _exchange(port, chunked, _chunked(pack)) == (
            200,
            b'{"path":"/git/111111111111/r.git/git-receive-pack","length":5120}',
        )
        sized = push + f"content-length: {len(pack)}\r\n\r\n".encode()
        assert _exchange(port, sized, pack)[0] == 200
        assert _exchange(port, chunked, _chunked(pack * 2))[0] == 413  # over Git's limit
        assert _exchange(port, chunked, b"zz\r\nbroken")[0] == 413  # not a chunk size
        api_sized = api + f"content-length: {len(pack)}\r\n\r\n".encode()
        assert _exchange(port, api_sized, pack)[0] == 413
        api_chunked = api + b"transfer-encoding: chunked\r\n\r\n"
        assert _exchange(port, api_chunked, _chunked(pack))[0] == 413
    finally:
        stop()
