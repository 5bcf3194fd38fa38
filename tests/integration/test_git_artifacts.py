"""Git artifact repositories end to end: the real `git` CLI against GitHttp over HTTP,
plus the REST use cases (ArtifactService) on the same repositories.

The endpoint runs in-process: a ThreadingHTTPServer that turns each request into a
`treadle.api.http.Request` and serves `/git/<tenant>/<repo>.git/<rest>` with
`GitHttp.handle`, as the real server will once it is wired.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import Commit, ObjectID, ShaFile
from dulwich.pack import extend_pack, write_pack_objects

from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.api.auth import GitGrant
from treadle.api.git_http import GitHttp
from treadle.api.http import Request
from treadle.artifacts import ArtifactService, Repositories, packs
from treadle.domain.errors import AlreadyExists, Conflict, InvalidParameter, NotFound

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

TENANT = "123456789012"
AUTHOR = "Ada <ada@example.com>"


@dataclass
class Stack:
    repos: Repositories
    service: ArtifactService
    git: GitHttp


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    refs = SqliteRefStore(tmp_path / "refs.sqlite")
    repos = Repositories(LocalObjectStore(tmp_path / "objects"), refs)
    yield Stack(
        repos,
        ArtifactService(repos, clock=lambda: 1_700_000_000),
        GitHttp(repos, lambda request: GitGrant(TENANT)),
    )
    refs.close()


class GitServer:
    """Serves GitHttp over real HTTP/1.1; `on_request` lets a test hold requests."""

    def __init__(self, git: GitHttp) -> None:
        self.on_request: Callable[[Request], None] = lambda request: None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                url = urlsplit(self.path)
                request = Request.build(
                    self.command, url.path, url.query, dict(self.headers), self._read_body()
                )
                outer.on_request(request)
                _, _, tenant, repo_git, rest = url.path.split("/", 4)
                response = git.handle(request, tenant, repo_git.removesuffix(".git"), rest)
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}/git/{TENANT}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, repo: str) -> str:
        return f"{self.base}/{repo}.git"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server(stack: Stack) -> Iterator[GitServer]:
    srv = GitServer(stack.git)
    yield srv
    srv.close()


@pytest.fixture
def git_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "LC_ALL": "C",
    }


def git(env: dict[str, str], cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def clone(env: dict[str, str], url: str, dest: Path, *extra: str) -> Path:
    git(env, dest.parent, "clone", *extra, url, dest.name)
    return dest


def commit_file(env: dict[str, str], work: Path, name: str, content: str) -> str:
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(content)
    git(env, work, "add", name)
    git(env, work, "commit", "-q", "-m", f"write {name}")
    return git(env, work, "rev-parse", "HEAD").strip()


# -- git CLI over smart HTTP ---------------------------------------------------------


def test_clone_empty_push_and_clone_again(
    stack: Stack, server: GitServer, git_env: dict[str, str], tmp_path: Path
) -> None:
    stack.service.create_repo(TENANT, "app")
    work = clone(git_env, server.url("app"), tmp_path / "a")
    assert (work / ".git").is_dir()
    sha = commit_file(git_env, work, "src/handler.py", "def handler(e, c):\n    return e\n")
    git(git_env, work, "push", "origin", "HEAD:refs/heads/main")

    again = clone(git_env, server.url("app"), tmp_path / "b")
    assert (again / "src/handler.py").read_text().startswith("def handler")
    assert git(git_env, again, "rev-parse", "HEAD").strip() == sha
    assert git(git_env, again, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert stack.service.read_blob(TENANT, "app", "main", "src/handler.py").startswith(b"def")
    git(git_env, again, "fsck", "--full", "--strict")  # raises on any problem


def test_protocol_v1_and_large_chunked_push(
    stack: Stack, server: GitServer, git_env: dict[str, str], tmp_path: Path
) -> None:
    stack.service.create_repo(TENANT, "big")
    work = clone(git_env, server.url("big"), tmp_path / "a", "-c", "protocol.version=1")
    blob = os.urandom(3 << 20)  # incompressible, above http.postBuffer: a chunked POST
    (work / "data.bin").write_bytes(blob)
    git(git_env, work, "add", "data.bin")
    git(git_env, work, "commit", "-q", "-m", "big")
    git(git_env, work, "-c", "protocol.version=1", "push", "origin", "HEAD:main")
    again = clone(git_env, server.url("big"), tmp_path / "b", "-c", "protocol.version=1")
    assert (again / "data.bin").read_bytes() == blob


def test_fetch_sees_commits_made_through_the_service(
    stack: Stack,
    server: GitServer,
    git_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack.service.create_repo(TENANT, "app")
    text = "".join(f"line {i}: {i * 7919 % 10007}\n" for i in range(3000))
    first = stack.service.commit_files(
        TENANT, "app", "main", {"a.txt": text.encode()}, "one", AUTHOR
    )
    work = clone(git_env, server.url("app"), tmp_path / "a")
    assert git(git_env, work, "rev-parse", "HEAD").strip() == first
    # A small edit of a big file: git sends a thin pack, a delta against the server's
    # blob, which the server must complete with that base before storing the pack.
    completed_with: list[int] = []

    def spy(f: Any, object_ids: Any, **kw: Any) -> Any:
        completed_with.append(len(object_ids))
        return extend_pack(f, object_ids, **kw)

    monkeypatch.setattr(packs, "extend_pack", spy)
    commit_file(git_env, work, "a.txt", text + "client\n")
    git(git_env, work, "push", "origin", "main")
    assert completed_with and completed_with[0] >= 1
    git(git_env, clone(git_env, server.url("app"), tmp_path / "c"), "fsck", "--strict")
    second = stack.service.commit_files(
        TENANT, "app", "main", {"b/c.txt": b"service", "a.txt": None}, "two", AUTHOR
    )
    git(git_env, work, "pull", "-q", "--ff-only")
    assert git(git_env, work, "rev-parse", "HEAD").strip() == second
    assert (work / "b/c.txt").read_text() == "service"
    assert not (work / "a.txt").exists()


def test_non_fast_forward_push_is_refused(
    stack: Stack, server: GitServer, git_env: dict[str, str], tmp_path: Path
) -> None:
    stack.service.create_repo(TENANT, "app")
    base = stack.service.commit_files(TENANT, "app", "main", {"a": b"0"}, "base", AUTHOR)
    work = clone(git_env, server.url("app"), tmp_path / "a")
    moved = stack.service.commit_files(TENANT, "app", "main", {"a": b"1"}, "server", AUTHOR)
    git(git_env, work, "fetch", "-q")
    git(git_env, work, "reset", "-q", "--hard", base)
    commit_file(git_env, work, "b", "client")
    # --force makes the client send it; the server must still refuse to rewrite history.
    out = git(git_env, work, "push", "--force", "origin", "HEAD:main", check=False)
    assert "non-fast-forward" in out and "remote rejected" in out, out
    assert stack.service.log(TENANT, "app", "main", 1)[0].sha == moved


def test_two_concurrent_pushes_exactly_one_wins_and_no_commit_is_lost(
    stack: Stack, server: GitServer, git_env: dict[str, str], tmp_path: Path
) -> None:
    stack.service.create_repo(TENANT, "app")
    base = stack.service.commit_files(TENANT, "app", "main", {"a": b"0"}, "base", AUTHOR)
    works = [clone(git_env, server.url("app"), tmp_path / f"w{i}") for i in range(2)]
    shas = [commit_file(git_env, w, f"file{i}", f"from {i}") for i, w in enumerate(works)]

    # Hold both advertisements until both pushes asked: both clients then send
    # "main: base -> mine", so the server's compare-and-swap (not the client) decides.
    barrier = threading.Barrier(2, timeout=20)

    def hold(request: Request) -> None:
        if request.q("service") == "git-receive-pack":
            barrier.wait()

    server.on_request = hold
    results: list[tuple[int, str]] = [(-1, "")] * 2

    def push(i: int) -> None:
        proc = subprocess.run(
            ["git", "push", "origin", "HEAD:main"],
            cwd=works[i],
            env=git_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        results[i] = (proc.returncode, proc.stderr)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.on_request = lambda request: None

    winners = [i for i, (code, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    loser = 1 - winners[0]
    assert "non-fast-forward" in results[loser][1], results[loser][1]
    log = stack.service.log(TENANT, "app", "main", 10)
    assert [c.sha for c in log] == [shas[winners[0]], base]

    # The loser integrates and pushes: both commits end up in the history.
    git(git_env, works[loser], "pull", "-q", "--rebase")
    git(git_env, works[loser], "push", "-q", "origin", "HEAD:main")
    history = git(git_env, works[loser], "log", "--format=%s").split()
    assert sorted(s for s in history if s.startswith("file")) == ["file0", "file1"]
    files = {e.name for e in stack.service.read_tree(TENANT, "app", "main", "")}
    assert files == {"a", "file0", "file1"}


def test_branches_tags_and_deletes_over_http(
    stack: Stack, server: GitServer, git_env: dict[str, str], tmp_path: Path
) -> None:
    stack.service.create_repo(TENANT, "app")
    work = clone(git_env, server.url("app"), tmp_path / "a")
    commit_file(git_env, work, "x", "1")
    git(git_env, work, "tag", "-a", "v1", "-m", "release 1")
    git(git_env, work, "push", "-q", "--atomic", "origin", "HEAD:main", "HEAD:refs/heads/dev")
    git(git_env, work, "push", "-q", "origin", "v1")
    refs = stack.repos.refs.get_refs(TENANT, "app")
    assert set(refs) == {b"refs/heads/main", b"refs/heads/dev", b"refs/tags/v1"}
    assert stack.service.read_blob(TENANT, "app", "v1", "x") == b"1"
    git(git_env, work, "push", "-q", "origin", ":dev")
    assert b"refs/heads/dev" not in stack.repos.refs.get_refs(TENANT, "app")
    again = clone(git_env, server.url("app"), tmp_path / "b")
    assert git(git_env, again, "describe", "--tags").strip() == "v1"


def test_http_errors(stack: Stack) -> None:
    stack.service.create_repo(TENANT, "app")

    def call(method: str, rest: str, query: str = "", **headers: str) -> tuple[int, bytes]:
        body = b"0000"
        if headers.get("content-encoding") == "gzip":
            body = gzip.compress(body)
        request = Request.build(method, f"/git/{TENANT}/app.git/{rest}", query, headers, body)
        response = stack.git.handle(request, TENANT, "app" if rest != "x" else "nope", rest)
        return response.status, response.body

    assert call("GET", "x", "service=git-upload-pack")[0] == 404  # unknown repository
    assert call("GET", "info/refs")[0] == 403  # dumb protocol
    assert call("GET", "info/refs", "service=git-archive")[0] == 403
    assert call("GET", "HEAD")[0] == 404
    assert call("GET", "git-upload-pack")[0] == 405
    assert call("POST", "git-upload-pack", **{"content-type": "text/plain"})[0] == 415
    ok = {"content-type": "application/x-git-upload-pack-request"}
    assert call("POST", "git-upload-pack", **ok, **{"content-encoding": "br"})[0] == 415
    assert call("POST", "git-upload-pack", **ok, **{"content-encoding": "gzip"})[0] == 200
    status, body = call("GET", "info/refs", "service=git-upload-pack")
    assert status == 200 and body.startswith(b"001e# service=git-upload-pack\n0000")


def test_gzip_encoded_upload_pack_request(stack: Stack) -> None:
    stack.service.create_repo(TENANT, "app")
    sha = stack.service.commit_files(TENANT, "app", "main", {"f": b"x"}, "m", AUTHOR)

    def pkt(line: bytes) -> bytes:
        return b"%04x" % (len(line) + 4) + line

    caps = b" multi_ack_detailed side-band-64k thin-pack ofs-delta agent=test"
    body = pkt(b"want " + sha.encode() + caps + b"\n") + b"0000" + pkt(b"done\n")
    request = Request.build(
        "POST",
        f"/git/{TENANT}/app.git/git-upload-pack",
        "",
        {
            "content-type": "application/x-git-upload-pack-request",
            "content-encoding": "gzip",
        },
        gzip.compress(body),
    )
    response = stack.git.handle(request, TENANT, "app", "git-upload-pack")
    assert response.status == 200
    assert response.headers["content-type"] == "application/x-git-upload-pack-result"
    assert response.body.startswith(b"0008NAK\n") and b"PACK" in response.body


def test_receive_pack_refuses_bad_packs_and_missing_objects(stack: Stack) -> None:
    stack.service.create_repo(TENANT, "app")
    base = stack.service.commit_files(TENANT, "app", "main", {"f": b"x"}, "m", AUTHOR)

    def push(commands: list[tuple[str, str, str]], pack: bytes) -> bytes:
        lines = [f"{old} {new} {ref}".encode() for old, new, ref in commands]
        lines[0] += b"\x00report-status"
        body = b"".join(b"%04x" % (len(ln) + 5) + ln + b"\n" for ln in lines) + b"0000" + pack
        request = Request.build(
            "POST",
            f"/git/{TENANT}/app.git/git-receive-pack",
            "",
            {"content-type": "application/x-git-receive-pack-request"},
            body,
        )
        response = stack.git.handle(request, TENANT, "app", "git-receive-pack")
        assert response.status == 200
        return response.body

    def pack_of(*objs: ShaFile) -> bytes:
        out = BytesIO()
        write_pack_objects(out, [(o, None) for o in objs], DEFAULT_OBJECT_FORMAT)
        return out.getvalue()

    out = push([(base, "1" * 40, "refs/heads/main")], b"PACK garbage")
    assert b"ng refs/heads/main unpacker error" in out
    # A commit whose tree the pack does not carry: git's "missing necessary objects".
    orphan = Commit()
    orphan.tree = ObjectID(b"2" * 40)
    orphan.parents = [ObjectID(base.encode())]
    orphan.author = orphan.committer = AUTHOR.encode()
    orphan.author_time = orphan.commit_time = 0
    orphan.author_timezone = orphan.commit_timezone = 0
    orphan.message = b"m\n"
    out = push([(base, orphan.id.decode(), "refs/heads/main")], pack_of(orphan))
    assert b"unpack ok" in out and b"ng refs/heads/main missing necessary objects" in out
    out = push([("0" * 40, base, "refs/heads/x"), ("0" * 40, base, "HEAD")], pack_of())
    assert b"ok refs/heads/x" in out and b"ng HEAD funny refname" in out
    out = push([(base, "0" * 40, "refs/heads/x"), (base, "0" * 40, "refs/heads/x")], b"")
    assert b"ng refs/heads/x ref updated twice" in out
    assert stack.repos.refs.get_refs(TENANT, "app")[b"refs/heads/main"] == base.encode()


# -- ArtifactService -----------------------------------------------------------------


def test_repo_lifecycle_and_a_thousand_repos(stack: Stack) -> None:
    svc = stack.service
    started = time.monotonic()
    for i in range(1000):
        svc.create_repo(TENANT, f"r{i:04d}")
    assert time.monotonic() - started < 10
    page = svc.list_repos(TENANT, limit=600)
    assert len(page.names) == 600 and page.next_marker == "r0599"
    rest = svc.list_repos(TENANT, limit=600, marker=page.next_marker)
    assert len(rest.names) == 400 and rest.next_marker is None
    assert svc.list_repos("999999999999").names == []  # tenants are isolated
    with pytest.raises(AlreadyExists, match="'r0001' already exists"):
        svc.create_repo(TENANT, "r0001")
    for bad in ("", "..", "a/b", "x" * 101, "sp ace"):
        with pytest.raises(InvalidParameter, match="Invalid repository name"):
            svc.create_repo(TENANT, bad)
    svc.commit_files(TENANT, "r0001", "main", {"f": b"1"}, "m", AUTHOR)
    svc.delete_repo(TENANT, "r0001")
    assert stack.repos.objects.list(f"tenants/{TENANT}/repos/r0001/") == []
    with pytest.raises(NotFound, match="'r0001' does not exist"):
        svc.read_tree(TENANT, "r0001", "main", "")
    with pytest.raises(NotFound):
        svc.delete_repo(TENANT, "r0001")


def test_commit_files_is_a_compare_and_swap_on_the_branch(stack: Stack) -> None:
    svc = stack.service
    svc.create_repo(TENANT, "app")
    zero = "0" * 40
    c1 = svc.commit_files(TENANT, "app", "main", {"a.txt": b"1"}, "one", AUTHOR, zero)
    with pytest.raises(Conflict, match=f"Branch 'main' is at {c1}, but .* not to exist"):
        svc.commit_files(TENANT, "app", "main", {"a.txt": b"x"}, "m", AUTHOR, zero)
    c2 = svc.commit_files(TENANT, "app", "main", {"b/c.txt": b"2"}, "two", AUTHOR, c1)
    with pytest.raises(Conflict, match=f"is at {c2}, but the commit expected it at {c1}"):
        svc.commit_files(TENANT, "app", "main", {"a.txt": b"stale"}, "m", AUTHOR, c1)
    assert svc.read_blob(TENANT, "app", "main", "a.txt") == b"1"

    # Racing writers with the same expected parent: exactly one wins.
    outcomes: list[str] = []

    def write(i: int) -> None:
        try:
            svc.commit_files(TENANT, "app", "main", {f"t{i}": b"x"}, f"t{i}", AUTHOR, c2)
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["won"]

    # Without an expected parent every writer lands: re-applied on the moved branch.
    def append(i: int) -> None:
        svc.commit_files(TENANT, "app", "main", {f"u{i}": b"y"}, f"u{i}", AUTHOR)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = {e.name for e in svc.read_tree(TENANT, "app", "main", "")}
    assert {"u0", "u1", "u2", "u3"} <= names
    assert len(svc.log(TENANT, "app", "main", 100)) == 2 + 1 + 4


def test_read_tree_blob_and_log_at_a_ref(stack: Stack) -> None:
    svc = stack.service
    svc.create_repo(TENANT, "app")
    with pytest.raises(NotFound, match="has no commits yet"):
        svc.log(TENANT, "app", "main", 10)
    c1 = svc.commit_files(
        TENANT, "app", "main", {"README": b"v1", "src/a.py": b"a", "src/b.py": b"b"}, "one", AUTHOR
    )
    c2 = svc.commit_files(
        TENANT, "app", "main", {"README": b"v2", "src/b.py": None}, "two\n\nbody", AUTHOR, c1
    )
    assert svc.read_blob(TENANT, "app", "main", "README") == b"v2"
    assert svc.read_blob(TENANT, "app", c1, "README") == b"v1"
    assert svc.read_blob(TENANT, "app", c1[:10], "src/b.py") == b"b"
    assert svc.read_blob(TENANT, "app", "refs/heads/main", "/src/a.py") == b"a"
    root = svc.read_tree(TENANT, "app", "main", "")
    assert [(e.name, e.kind) for e in root] == [("README", "file"), ("src", "directory")]
    src = svc.read_tree(TENANT, "app", c1, "src")
    assert [(e.path, e.mode) for e in src] == [("src/a.py", 0o100644), ("src/b.py", 0o100644)]
    log = svc.log(TENANT, "app", "main", 10)
    assert [c.sha for c in log] == [c2, c1]
    assert log[0].parents == (c1,) and log[1].parents == ()
    assert log[0].message == "two\n\nbody\n" and log[0].author == AUTHOR
    assert log[0].author_time == 1_700_000_000
    assert len(svc.log(TENANT, "app", "main", 1)) == 1

    with pytest.raises(NotFound, match="Ref 'nope' does not exist"):
        svc.read_tree(TENANT, "app", "nope", "")
    with pytest.raises(NotFound, match=r"Path 'src/b\.py' does not exist"):
        svc.read_blob(TENANT, "app", "main", "src/b.py")
    with pytest.raises(InvalidParameter, match="'src' is a directory"):
        svc.read_blob(TENANT, "app", "main", "src")
    with pytest.raises(InvalidParameter, match="'README' is a file"):
        svc.read_tree(TENANT, "app", "main", "README")


def test_commit_files_validation(stack: Stack) -> None:
    svc = stack.service
    svc.create_repo(TENANT, "app")
    svc.commit_files(TENANT, "app", "main", {"a": b"1", "d/e": b"2"}, "m", AUTHOR)

    def commit(files: dict[str, bytes | None], **kw: str) -> str:
        args = {"branch": "main", "message": "m", "author": AUTHOR, **kw}
        return svc.commit_files(TENANT, "app", files=files, **args)  # type: ignore[arg-type]

    cases: list[tuple[dict[str, bytes | None], dict[str, str], str]] = [
        ({}, {}, "at least one path"),
        ({"../x": b""}, {}, "Invalid file path"),
        ({".git/config": b""}, {}, "reserved"),
        ({"missing": None}, {}, "Cannot delete 'missing'"),
        ({"d": b"x"}, {}, "Cannot write 'd': it is a directory"),
        ({"a/b": b"x"}, {}, "'a' is a file"),
        ({"n": b"1", "n/m": b"2"}, {}, "Cannot write both 'n' and 'n/m'"),
        ({"x": b"1"}, {"branch": "bad..name"}, "Invalid branch name"),
        ({"x": b"1"}, {"author": "nobody"}, "Invalid author"),
        ({"x": b"1"}, {"message": " "}, "message must not be empty"),
        ({"x": b"1"}, {"expected_parent": "abc"}, "Invalid expected parent"),
    ]
    for files, kw, match in cases:
        with pytest.raises(InvalidParameter, match=match):
            commit(files, **kw)
    # Replacing a file by a directory works when the file is deleted in the same commit,
    # and deleting a directory deletes it.
    commit({"a": None, "a/b": b"now a dir", "d": None})
    assert [e.path for e in svc.read_tree(TENANT, "app", "main", "")] == ["a"]
    assert svc.read_blob(TENANT, "app", "main", "a/b") == b"now a dir"
    with pytest.raises(NotFound, match="'nope' does not exist"):
        svc.commit_files(TENANT, "nope", "main", {"x": b"1"}, "m", AUTHOR)
