"""Forks share their source's packs (nothing copied, deleting the source breaks no
fork) and imports from a Git bundle, on a real server with the git CLI; the data
directory shows where the packs are.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from support.server import ServerProcess, v1


def _packs(server: ServerProcess, account: str, repo: str) -> list[str]:
    base = server.data_dir / "git" / "objects" / "tenants" / account / "repos" / repo / "packs"
    return sorted(p.name for p in base.glob("*.pack")) if base.exists() else []


class Git:
    def __init__(self, server: ServerProcess, home: Path) -> None:
        key, secret = server.credentials()
        self.base = f"http://{key}:{secret}@{server.url.removeprefix('http://')}/git"
        self.env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(home),
            "GIT_AUTHOR_NAME": "T",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "T",
            "GIT_COMMITTER_EMAIL": "t@x",
        }
        self.account = _account(server)

    def __call__(self, *args: str, cwd: Path | None = None) -> str:
        out = subprocess.run(
            ["git", *args], env=self.env, capture_output=True, text=True, timeout=60, cwd=cwd
        )
        assert out.returncode == 0, (args, out.stderr)
        return out.stdout

    def url(self, repo: str) -> str:
        return f"{self.base}/{self.account}/{repo}.git"

    def commit_and_push(self, work: Path, repo: str, name: str, text: str) -> None:
        (work / name).write_text(text)
        self("add", ".", cwd=work)
        self("commit", "-qm", f"add {name}", cwd=work)
        self("push", "-q", self.url(repo), "HEAD:main", cwd=work)


def _account(server: ServerProcess) -> str:
    v1(server, "POST", "/v1/repos", {"name": "whoami"})
    return str(v1(server, "GET", "/v1/repos/whoami")[1]["cloneUrl"].split("/")[-2])


@pytest.fixture
def git(server: ServerProcess, tmp_path: Path) -> Git:
    return Git(server, tmp_path)


def _files(git: Git, repo: str, into: Path) -> dict[str, str]:
    git("clone", "-q", git.url(repo), str(into))
    return {p.name: p.read_text() for p in into.iterdir() if p.is_file()}


def test_a_fork_shares_packs_sees_a_snapshot_and_outlives_its_source(
    server: ServerProcess, git: Git, tmp_path: Path
) -> None:
    account = git.account
    assert v1(server, "POST", "/v1/repos", {"name": "src"})[0] == 201
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    git.commit_and_push(work, "src", "a.txt", "one")
    git.commit_and_push(work, "src", "b.txt", "two")
    src_packs = _packs(server, account, "src")
    assert len(src_packs) == 2

    status, body = v1(server, "POST", "/v1/repos", {"name": "fork1", "forkOf": "src"})
    assert status == 201 and body["name"] == "fork1"
    assert (
        v1(server, "GET", "/v1/repos/fork1")[1]["refs"]
        == v1(server, "GET", "/v1/repos/src")[1]["refs"]
    )
    assert _packs(server, account, "fork1") == []  # nothing copied
    assert _files(git, "fork1", tmp_path / "c1") == {"a.txt": "one", "b.txt": "two"}

    # A push to the fork lands in the fork only; the source's later pushes stay its own.
    fork_work = tmp_path / "c1"
    git.commit_and_push(fork_work, "fork1", "fork.txt", "mine")
    assert len(_packs(server, account, "fork1")) == 1
    assert _packs(server, account, "src") == src_packs
    git.commit_and_push(work, "src", "later.txt", "after the fork")
    assert "later.txt" not in _files(git, "fork1", tmp_path / "c2")

    # A fork of the fork, then the source and the middle fork deleted: it still clones.
    assert v1(server, "POST", "/v1/repos", {"name": "fork2", "forkOf": "fork1"})[0] == 201
    assert v1(server, "DELETE", "/v1/repos/src")[0] == 204
    assert v1(server, "DELETE", "/v1/repos/fork1")[0] == 204
    assert _packs(server, account, "src") == src_packs  # held by fork2; later.txt's went
    files = _files(git, "fork2", tmp_path / "c3")
    assert files == {"a.txt": "one", "b.txt": "two", "fork.txt": "mine"}
    # The last holder gone, the packs kept for it go too.
    assert v1(server, "DELETE", "/v1/repos/fork2")[0] == 204
    assert _packs(server, account, "src") == [] and _packs(server, account, "fork1") == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": "f", "forkOf": "no-such-repo"}, 404, "Repository 'no-such-repo' does not exist"),
        ({"name": "f", "forkOf": "../x"}, 400, "Invalid repository name"),
        ({"name": "whoami", "forkOf": "whoami"}, 400, "cannot be a fork of itself"),
        ({"name": "f", "forkOf": "whoami", "bundle": ""}, 400, "not both"),
        ({"name": "f", "bundle": "%%%"}, 400, "bundle is not valid base64"),
        (
            {"name": "f", "bundle": base64.b64encode(b"PK\x03\x04").decode()},
            400,
            "not a Git bundle",
        ),
        (
            {"name": "f", "bundle": base64.b64encode(b"# v2 git bundle\nzz\n").decode()},
            400,
            "malformed",
        ),
    ],
)
def test_bad_forks_and_imports_are_refused_precisely_and_create_nothing(
    server: ServerProcess, git: Git, body: dict[str, str], status: int, message: str
) -> None:
    got, answer = v1(server, "POST", "/v1/repos", body)
    assert got == status and message in answer["error"]["message"], answer
    assert v1(server, "GET", "/v1/repos/f")[0] == 404


def test_a_fork_of_an_existing_name_or_another_tenants_repository_is_refused(
    server: ServerProcess, git: Git
) -> None:
    assert v1(server, "POST", "/v1/repos", {"name": "taken"})[0] == 201
    assert v1(server, "POST", "/v1/repos", {"name": "taken", "forkOf": "whoami"})[0] == 409
    admin = server.credentials("treadle-admin")
    status, body = v1(server, "POST", "/v1/tenants", {"name": "fork-b"}, credentials=admin)
    keys = (body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"])
    status, body = v1(
        server, "POST", "/v1/repos", {"name": "f", "forkOf": "taken"}, credentials=keys
    )
    assert status == 404, body


def test_a_bundle_imports_its_refs_and_objects(
    server: ServerProcess, git: Git, tmp_path: Path
) -> None:
    work = tmp_path / "local"
    git("init", "-q", "-b", "main", str(work))
    for name in ("x.txt", "y.txt"):
        (work / name).write_text(name)
        git("add", ".", cwd=work)
        git("commit", "-qm", name, cwd=work)
    git("branch", "feature", cwd=work)
    git("bundle", "create", str(tmp_path / "all.bundle"), "--all", cwd=work)
    encoded = base64.b64encode((tmp_path / "all.bundle").read_bytes()).decode()
    status, body = v1(server, "POST", "/v1/repos", {"name": "imported", "bundle": encoded})
    assert status == 201, body
    refs = v1(server, "GET", "/v1/repos/imported")[1]["refs"]
    head = git("rev-parse", "HEAD", cwd=work).strip()
    assert refs == {"refs/heads/main": head, "refs/heads/feature": head}
    assert _files(git, "imported", tmp_path / "clone") == {"x.txt": "x.txt", "y.txt": "y.txt"}
    # An incremental bundle (its base commit not included) is refused, and leaves nothing.
    git("bundle", "create", str(tmp_path / "inc.bundle"), "main~1..main", cwd=work)
    encoded = base64.b64encode((tmp_path / "inc.bundle").read_bytes()).decode()
    status, body = v1(server, "POST", "/v1/repos", {"name": "inc", "bundle": encoded})
    assert status == 400 and "does not contain" in body["error"]["message"]
    # A truncated pack: refused, no repository, no pack left on disk.
    data = (tmp_path / "all.bundle").read_bytes()
    encoded = base64.b64encode(data[: len(data) - 30]).decode()
    status, body = v1(server, "POST", "/v1/repos", {"name": "cut", "bundle": encoded})
    assert status == 400, body
    assert v1(server, "GET", "/v1/repos/cut")[0] == 404
    assert _packs(server, git.account, "cut") == []
