"""R1: Git repositories at scale: one tenant creates N of them (10,000 by default).

At 100, 1,000 and N repositories the run records, each as p50/p99 in milliseconds:
- create: `POST /v1/repos` (the creates that brought the count there, up to 200);
- ls-remote: `GET info/refs?service=git-upload-pack` (what `git ls-remote` sends) of
  200 repositories drawn from all of them;
- push: one `git-receive-pack` POST of a one-file commit (blob, tree, commit: what
  `git push` of a first commit sends) into 100 empty repositories.
"Flat" is the p50 at N over the p50 at 100 (target 1.5: within noise). The store's
bytes per empty repository are the growth of `DATA_DIR/git` over the N creates (its
SQLite files without their bounded write-ahead logs), divided by N.

Then, on one repository, a whole clone over smart HTTP (advertisement + upload-pack)
authenticated with the tenant's key and with a repository token (both HTTP Basic):
the token's cost is its one extra key read (the token record) and a SHA-256.

The client talks raw smart HTTP over one keep-alive connection (`http.client`): a git
process per call would add ~5 ms of fork/exec that is the client's, not the server's.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import Blob, Commit, Tree
from dulwich.pack import write_pack_objects

from benchmarks.spec import Env, Metric, Workload, percentile
from treadle.tenancy.credentials import read_profile

CHECKPOINTS = (100, 1_000)
LS_SAMPLES = 200
PUSH_SAMPLES = 100
CLONE_SAMPLES = 200
ZERO = b"0" * 40


def _pkt(line: bytes) -> bytes:
    return f"{len(line) + 4:04x}".encode() + line


def _one_file_push() -> tuple[bytes, bytes]:
    """(commit sha, receive-pack request body) of a first commit holding one file."""
    blob = Blob.from_string(b"print('hello')\n")
    tree = Tree()
    tree.add(b"handler.py", 0o100644, blob.id)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"Bench <bench@example.com>"
    commit.author_time = commit.commit_time = 1_700_000_000
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"one file\n"
    pack = BytesIO()
    write_pack_objects(
        pack.write, [(o, None) for o in (blob, tree, commit)], object_format=DEFAULT_OBJECT_FORMAT
    )
    command = ZERO + b" " + commit.id + b" refs/heads/main\x00report-status\n"
    return commit.id, _pkt(command) + b"0000" + pack.getvalue()


class Http:
    """One keep-alive connection to the server, HTTP Basic."""

    def __init__(self, url: str, user: str, password: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, float]:
        """(status, body, seconds)."""
        started = time.perf_counter()
        self.conn.request(method, path, body, {"authorization": self.auth, **(headers or {})})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data, time.perf_counter() - started

    def json(self, method: str, path: str, payload: Any) -> tuple[int, Any, float]:
        status, data, took = self.call(
            method, path, json.dumps(payload).encode(), {"content-type": "application/json"}
        )
        return status, json.loads(data or b"null"), took


def _du(path: Path) -> int:
    """Bytes of the store's files, its SQLite write-ahead logs left out: a WAL is
    checkpointed back into its database every ~4 MiB, so it is bounded, not per repo."""
    return sum(
        p.stat().st_size
        for p in path.rglob("*")
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    )


def _ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000


def run(env: Env) -> dict[str, float]:
    count = env.options.repos_count
    srv = env.srv
    creds = read_profile(srv.data_dir / "credentials", "treadle")
    assert creds is not None
    key = Http(srv.url, creds["aws_access_key_id"], creds["aws_secret_access_key"])
    status, _, _ = key.json("POST", "/v1/repos", {"name": "probe"})
    assert status == 201, status
    account = key.json("GET", "/v1/repos/probe", None)[1]["cloneUrl"].split("/")[-2]
    git_dir = srv.data_dir / "git"
    bytes_before = _du(git_dir)
    rng = random.Random(0)
    _sha, push_body = _one_file_push()
    figures: dict[str, float] = {}
    created: list[float] = []
    names: list[str] = []
    run_id = rng.randrange(1 << 30)
    for checkpoint in sorted({*(c for c in CHECKPOINTS if c < count), count}):
        while len(names) < checkpoint:
            env.deadline.check(f"creating repositories ({len(names):,} of {count:,})")
            name = f"r{run_id}-{len(names):06d}"
            status, body, took = key.json("POST", "/v1/repos", {"name": name})
            assert status == 201, body
            names.append(name)
            created.append(took)
        env.partial["repos_created"] = float(len(names))
        if checkpoint == count:
            figures["bytes_per_repo"] = (_du(git_dir) - bytes_before) / count
        window = created[-min(200, checkpoint) :]
        figures[f"create_p50_{checkpoint}"] = _ms(window, 50)
        figures[f"create_p99_{checkpoint}"] = _ms(window, 99)
        ls: list[float] = []
        for name in rng.sample(names, min(LS_SAMPLES, len(names))):
            path = f"/git/{account}/{name}.git/info/refs?service=git-upload-pack"
            status, _, took = key.call("GET", path)
            assert status == 200, status
            ls.append(took)
        figures[f"ls_p50_{checkpoint}"] = _ms(ls, 50)
        figures[f"ls_p99_{checkpoint}"] = _ms(ls, 99)
        pushes: list[float] = []
        for name in names[-PUSH_SAMPLES:]:
            path = f"/git/{account}/{name}.git/git-receive-pack"
            headers = {"content-type": "application/x-git-receive-pack-request"}
            status, data, took = key.call("POST", path, push_body, headers)
            assert status == 200 and b"ok refs/heads/main" in data, (status, data[:200])
            pushes.append(took)
        figures[f"push_p50_{checkpoint}"] = _ms(pushes, 50)
        figures[f"push_p99_{checkpoint}"] = _ms(pushes, 99)
    first = min(c for c in (*CHECKPOINTS, count) if c <= count)
    for op in ("create", "ls", "push"):
        figures[f"{op}_growth"] = figures[f"{op}_p50_{count}"] / figures[f"{op}_p50_{first}"]
    figures.update(_clone_costs(srv.url, key, account, names[-1]))
    return figures


def _clone_costs(url: str, key: Http, account: str, repo: str) -> dict[str, float]:
    """p50 of a whole clone (advertisement + upload-pack) with a key and with a token."""
    status, minted, _ = key.json("POST", f"/v1/repos/{repo}/tokens", {"access": "read"})
    assert status == 201, minted
    token = Http(url, "x-token", minted["token"])
    base = f"/git/{account}/{repo}.git"
    refs = key.json("GET", f"/v1/repos/{repo}", None)[1]["refs"]
    want = refs["refs/heads/main"].encode()
    body = (
        _pkt(b"want " + want + b" side-band-64k ofs-delta thin-pack\n") + b"0000" + _pkt(b"done\n")
    )
    headers = {"content-type": "application/x-git-upload-pack-request"}
    took: dict[str, list[float]] = {"key": [], "token": []}
    # Interleaved, so that drift in the machine's load falls on both alike.
    for _ in range(CLONE_SAMPLES):
        for label, client in (("key", key), ("token", token)):
            s1, _, t1 = client.call("GET", f"{base}/info/refs?service=git-upload-pack")
            s2, data, t2 = client.call("POST", f"{base}/git-upload-pack", body, headers)
            assert s1 == 200 and s2 == 200 and b"PACK" in data, (s1, s2, data[:200])
            took[label].append(t1 + t2)
    out = {f"clone_{label}_p50": _ms(values, 50) for label, values in took.items()}
    out["token_clone_extra"] = out["clone_token_p50"] - out["clone_key_p50"]
    return out


def _metrics() -> tuple[Metric, ...]:
    at = (*CHECKPOINTS, "N")
    per: list[Metric] = []
    for op, label in (("create", "create"), ("ls", "ls-remote"), ("push", "one-file push")):
        for c in at:
            shown = f"{c:,}" if isinstance(c, int) else "N"
            per.append(Metric(f"{op}_p50_{c}", f"{label} p50 at {shown}", "ms"))
            per.append(Metric(f"{op}_p99_{c}", f"{label} p99 at {shown}", "ms"))
        per.append(Metric(f"{op}_growth", f"{label} p50 at N / at 100", "x", target=1.5))
    return (
        *per,
        Metric("bytes_per_repo", "store bytes per empty repository", "B"),
        Metric("clone_key_p50", "clone p50, tenant key", "ms"),
        Metric("clone_token_p50", "clone p50, repository token", "ms"),
        Metric("token_clone_extra", "token clone minus key clone (p50)", "ms"),
    )


def _rename_final(figures: dict[str, float], count: int) -> dict[str, float]:
    """Figures at N under the `_N` keys the metrics name (N is an option)."""
    return {
        k.replace(f"_{count}", "_N") if k.endswith(f"_{count}") else k: v
        for k, v in figures.items()
    }


def _run(env: Env) -> dict[str, float]:
    return _rename_final(run(env), env.options.repos_count)


WORKLOAD = Workload(
    id="R1",
    title="{repos_count:,} Git repositories for one tenant: create, ls-remote, push",
    metrics=_metrics(),
    run=_run,
    budget_s=lambda o: 60 + o.repos_count * 0.03,
    runs=lambda _o: 1,
)
