"""Repository tokens on a real server: minted, listed and revoked on `/v1`, used by the
git CLI over smart HTTP (user `x-token`), refused everywhere else, as an attacker
would try them: another tenant, another repository, a push with a read token, after
expiry, after revocation, after the repository was deleted and re-created.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, v1


def _git(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(tmp_path),
        "GIT_AUTHOR_NAME": "Agent",
        "GIT_AUTHOR_EMAIL": "agent@example.com",
        "GIT_COMMITTER_NAME": "Agent",
        "GIT_COMMITTER_EMAIL": "agent@example.com",
    }


class Tenants:
    def __init__(self, server: ServerProcess) -> None:
        admin = server.credentials("treadle-admin")
        status, body = v1(server, "POST", "/v1/tenants", {"name": "tokens-b"}, credentials=admin)
        assert status == 201
        self.b = (body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"])
        self.b_account = body["tenant"]["accountId"]
        self.server = server
        self.host = server.url.removeprefix("http://")
        for name in ("tok-x", "tok-y"):
            assert v1(server, "POST", "/v1/repos", {"name": name})[0] == 201
            status, _ = v1(
                server,
                "POST",
                f"/v1/repos/{name}/commits",
                {"message": "init", "files": {"README": {"content": f"{name} secret"}}},
            )
            assert status == 201
        assert v1(server, "POST", "/v1/repos", {"name": "tok-x"}, credentials=self.b)[0] == 201
        status, body = v1(server, "GET", "/v1/repos/tok-x")
        self.account = body["cloneUrl"].split("/git/")[1].split("/")[0]

    def mint(self, repo: str, access: str, ttl: int = 600, **kw: Any) -> dict[str, Any]:
        payload = {"access": access, "ttlSeconds": ttl}
        status, body = v1(self.server, "POST", f"/v1/repos/{repo}/tokens", payload, **kw)
        assert status == 201, body
        return dict(body)

    def url(self, token: str, repo: str, account: str | None = None) -> str:
        return f"http://x-token:{token}@{self.host}/git/{account or self.account}/{repo}.git"


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Tenants:
    return Tenants(server)


def test_a_minted_token_is_shown_once_and_listed_without_its_secret(world: Tenants) -> None:
    body = world.mint("tok-x", "read", 120)
    assert body["username"] == "x-token" and body["token"].startswith(body["tokenId"] + ".")
    assert body["expiresAt"] - body["createdAt"] == 120
    status, listed = v1(world.server, "GET", "/v1/repos/tok-x/tokens")
    assert status == 200
    mine = [t for t in listed["tokens"] if t["tokenId"] == body["tokenId"]]
    assert mine == [{k: body[k] for k in ("tokenId", "access", "createdAt", "expiresAt")}]
    assert body["token"].split(".")[1] not in str(listed)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"access": "admin"}, "access must be 'read' or 'write'"),
        ({"access": "read", "ttlSeconds": 0}, "ttlSeconds must be an integer from 1"),
        ({"access": "read", "ttlSeconds": "60"}, "ttlSeconds"),
        ({"ttlSeconds": 60}, "access: Field required"),
        ({"access": "read", "scope": "all"}, "scope: Extra inputs are not permitted"),
    ],
)
def test_a_bad_mint_request_gets_a_precise_message(
    world: Tenants, payload: dict[str, Any], message: str
) -> None:
    status, body = v1(world.server, "POST", "/v1/repos/tok-x/tokens", payload)
    assert status == 400 and message in body["error"]["message"], body


def test_a_write_token_clones_and_pushes_its_repository_with_the_git_cli(
    world: Tenants, env: dict[str, str], tmp_path: Path
) -> None:
    token = world.mint("tok-x", "write")["token"]
    work = tmp_path / "x"
    out = _git(env, "clone", world.url(token, "tok-x"), str(work))
    assert out.returncode == 0, out.stderr
    assert (work / "README").read_text() == "tok-x secret"
    (work / "new.txt").write_text("pushed with a token")
    assert _git(env, "add", ".", cwd=work).returncode == 0
    assert _git(env, "commit", "-qm", "token push", cwd=work).returncode == 0
    out = _git(env, "push", "origin", "HEAD:main", cwd=work)
    assert out.returncode == 0, out.stderr
    status, body = v1(world.server, "GET", "/v1/repos/tok-x/blob?ref=main&path=new.txt")
    assert status == 200 and body == b"pushed with a token"


def test_a_read_token_clones_but_cannot_push(
    world: Tenants, env: dict[str, str], tmp_path: Path
) -> None:
    token = world.mint("tok-y", "read")["token"]
    work = tmp_path / "y"
    assert _git(env, "clone", world.url(token, "tok-y"), str(work)).returncode == 0
    (work / "evil.txt").write_text("x")
    _git(env, "add", ".", cwd=work)
    _git(env, "commit", "-qm", "evil", cwd=work)
    out = _git(env, "push", "origin", "HEAD:main", cwd=work)
    assert out.returncode != 0 and "403" in out.stderr, out.stderr
    assert v1(world.server, "GET", "/v1/repos/tok-y/blob?ref=main&path=evil.txt")[0] == 404


def test_a_token_for_one_repository_does_not_open_another(
    world: Tenants, env: dict[str, str]
) -> None:
    token = world.mint("tok-x", "write")["token"]
    out = _git(env, "ls-remote", world.url(token, "tok-y"))
    assert out.returncode != 0 and "Authentication failed" in out.stderr, out.stderr
    assert "tok-y secret" not in out.stdout


def test_tenant_b_cannot_use_or_manage_tenant_a_tokens(world: Tenants, env: dict[str, str]) -> None:
    body = world.mint("tok-x", "write")
    # A's token on B's repository of the same name, and under B's account in the URL.
    out = _git(env, "ls-remote", world.url(body["token"], "tok-x", world.b_account))
    assert out.returncode != 0 and "Authentication failed" in out.stderr
    # B's keys on A's tokens: mint, list, revoke all look like a missing repository/token.
    b = {"credentials": world.b}
    status, _ = v1(world.server, "POST", "/v1/repos/tok-y/tokens", {"access": "read"}, **b)
    assert status == 404
    status, listed = v1(world.server, "GET", "/v1/repos/tok-x/tokens", **b)
    assert status == 200 and listed["tokens"] == []  # B's own tok-x has none
    path = f"/v1/repos/tok-x/tokens/{body['tokenId']}"
    assert v1(world.server, "DELETE", path, **b)[0] == 404
    assert _git(env, "ls-remote", world.url(body["token"], "tok-x")).returncode == 0
    # A token is not an access key: it opens no API call.
    status, _ = v1(world.server, "GET", "/v1/repos", credentials=("x-token", body["token"]))
    assert status in (401, 403)


def test_revoked_expired_and_forged_tokens_are_refused(world: Tenants, env: dict[str, str]) -> None:
    revoked = world.mint("tok-x", "read")
    assert v1(world.server, "DELETE", f"/v1/repos/tok-x/tokens/{revoked['tokenId']}")[0] == 204
    expiring = world.mint("tok-x", "read", ttl=1)
    assert _git(env, "ls-remote", world.url(expiring["token"], "tok-x")).returncode == 0
    time.sleep(1.2)
    forged = revoked["tokenId"] + "." + "A" * 40
    for token in (revoked["token"], expiring["token"], forged, "garbage"):
        out = _git(env, "ls-remote", world.url(token, "tok-x"))
        assert out.returncode != 0 and "Authentication failed" in out.stderr, (token, out.stderr)


def test_a_deleted_repository_takes_its_tokens_along(world: Tenants, env: dict[str, str]) -> None:
    assert v1(world.server, "POST", "/v1/repos", {"name": "tok-z"})[0] == 201
    token = world.mint("tok-z", "write")["token"]
    assert v1(world.server, "DELETE", "/v1/repos/tok-z")[0] == 204
    assert v1(world.server, "POST", "/v1/repos", {"name": "tok-z"})[0] == 201
    out = _git(env, "ls-remote", world.url(token, "tok-z"))
    assert out.returncode != 0 and "Authentication failed" in out.stderr


def test_a_disabled_tenants_tokens_are_refused_until_it_is_enabled(
    world: Tenants, env: dict[str, str]
) -> None:
    admin = world.server.credentials("treadle-admin")
    b = {"credentials": world.b}
    status, minted = v1(world.server, "POST", "/v1/repos/tok-x/tokens", {"access": "read"}, **b)
    assert status == 201
    url = world.url(minted["token"], "tok-x", world.b_account)
    assert _git(env, "ls-remote", url).returncode == 0
    path = f"/v1/tenants/{world.b_account}"
    assert v1(world.server, "PATCH", path, {"disabled": True}, credentials=admin)[0] == 200
    try:
        out = _git(env, "ls-remote", url)
        assert out.returncode != 0 and "Authentication failed" in out.stderr
    finally:
        assert v1(world.server, "PATCH", path, {"disabled": False}, credentials=admin)[0] == 200
    assert _git(env, "ls-remote", url).returncode == 0
