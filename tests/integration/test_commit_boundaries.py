"""Crash at every commit boundary (issue 18, point 1; docs/operating.md).

One fixed workload (a durable function with a step that fails once and is retried, a
wait, a callback the test answers, a child context, a chained invoke, a map of 3, a
facet written exactly once; then a git push and a deploy from the pushed repository)
is run once with `TREADLE_FAILPOINT=count:<file>` to learn how many boundaries it
crosses. Then, for every boundary k and both sides of it, the workload runs again on
a copy of the same prepared data directory with the server crashing (`os._exit`) at
k; `treadle dev` restarts on that directory, the workload is finished (every call is
idempotent: the start by name, the callback if still pending, the push, the deploy)
and the invariants are checked:

- every execution ends with the result of the run that did not crash;
- history event ids are dense, each step id has one StepSucceeded, the callback's
  answer is in the result (not lost), the facet holds the effect once;
- what was acknowledged before the crash is there after it (refs never move back);
- the tenant workers of the dead server are gone; no temporary file is left behind.

The boundaries are shared among a few test items so that xdist spreads them.

The same test runs on the AWS backend over a moto server (`make faults`, not in CI:
`TREADLE_FAULTS_AWS=1`). There the state lives in moto, which has no snapshot: every
run prepares its own stage (table, bucket, queue) from scratch, and the boundaries are
the DynamoDB client's writes, the refs' transactions and the SQS timers handed to the
engine (`adapters/aws/failpoint_hooks.py`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from support.boundaries import (
    ECHO,
    FLOW,
    FLOW_RESULT,
    PLAIN,
    Watch,
    git,
    git_env,
    same_process_alive,
)
from support.moto_server import aws_env, moto_server
from support.server import ServerProcess, client, deploy, v1
from treadle.failpoints import CRASH_EXIT_CODE, Kind
from treadle.settings import ENV_FAILPOINT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI"),
]

SHARDS = 6
ENV_AWS = "TREADLE_FAULTS_AWS"  # set: the AWS variant runs too (make faults)
POINTS_AT_ONCE = 2
WAIT_TIME_SCALE = 0.01  # the 2 s wait and the 1 s retry delay take milliseconds
EXECUTION = "boundaries-1"

_CLIENTS = threading.Lock()


def _client(server: ServerProcess, **config: Any) -> Any:
    """A boto3 client; made under a lock, as boto3's default session is not thread-safe."""
    with _CLIENTS:
        return client(server, **config)


class Crashed(Exception):
    """The server died at its failpoint (any other death fails the test)."""


@dataclass
class Acked:
    """What the server acknowledged, hence must still show after a crash."""

    arn: str | None = None
    answered: bool = False
    pushed: str | None = None
    deployed_tip: str | None = None
    refused_pushes: int = 0
    results: dict[str, Any] = field(default_factory=dict)


def _git_url(server: ServerProcess, account: str) -> str:
    key, secret = (quote(part, safe="") for part in server.credentials())
    return f"http://{key}:{secret}@{server.url.removeprefix('http://')}/git/{account}/app-src.git"


def _tip(server: ServerProcess, repo: str) -> str | None:
    status, info = v1(server, "GET", f"/v1/repos/{repo}")
    assert status == 200, info
    return info["refs"].get("refs/heads/main")  # type: ignore[no-any-return]


def _history(lam: Any, arn: str) -> list[dict[str, Any]]:
    return lam.get_durable_execution_history(  # type: ignore[no-any-return]
        DurableExecutionArn=arn, MaxItems=1000
    )["Events"]


@dataclass
class Prepared:
    """A stopped server's data directory with the functions and repository made."""

    data: Path
    account: str
    work: Path  # a Git working tree with one commit, pushed by the workload
    commit: str
    functions_tip: str
    pycache: Path
    env: dict[str, str]  # the backend's (AWS: the moto server and this run's stage)


@dataclass(frozen=True)
class Backend:
    name: str
    moto: str | None = None  # the moto server's URL on the AWS backend

    def env(self) -> dict[str, str]:
        """A fresh stage of its own on the AWS backend (its table, bucket and queue)."""
        if self.moto is None:
            return {}
        return aws_env(self.moto, f"fp{uuid.uuid4().hex[:10]}")


def _server(
    data: Path,
    pycache: Path,
    failpoint: str | None = None,
    backend_env: dict[str, str] | None = None,
) -> ServerProcess:
    """`treadle dev` on `data`; its compiled modules kept in `pycache` (the test starts
    the server hundreds of times: compiling the platform at each start costs a third
    of it, where PYTHONDONTWRITEBYTECODE is set)."""
    env = {
        "PYTHONPYCACHEPREFIX": str(pycache),
        "PYTHONDONTWRITEBYTECODE": "",
        **(backend_env or {}),
    }
    if failpoint is not None:
        env[ENV_FAILPOINT] = failpoint
    return ServerProcess(data, wait_time_scale=WAIT_TIME_SCALE, env=env)


def prepare(root: Path, backend_env: dict[str, str], pycache: Path) -> Prepared:
    root.mkdir(parents=True, exist_ok=True)
    data = root / "snapshot"
    server = _server(data, pycache, backend_env=backend_env)
    server.start()
    try:
        lam = _client(server)
        deploy(lam, "echo", {"handler.py": ECHO})
        fn = deploy(lam, "flow", {"handler.py": FLOW})
        account = fn["FunctionArn"].split(":")[4]
        status, made = v1(server, "POST", "/v1/repos", {"name": "app-src"})
        assert status == 201, made
        functions_tip = _tip(server, "functions")
        assert functions_tip is not None
    finally:
        server.stop()
    work = root / "work"
    (work / "svc").mkdir(parents=True)
    (work / "svc" / "handler.py").write_text(PLAIN)
    env = git_env(root / "home")
    for args in (("init", "-q"), ("add", "-A"), ("commit", "-q", "-m", "first")):
        assert git(env, work, *args).returncode == 0
    commit = git(env, work, "rev-parse", "HEAD").stdout.strip()
    return Prepared(data, account, work, commit, functions_tip, pycache, backend_env)


def _raise_if_crashed(server: ServerProcess) -> None:
    """After a failed call: Crashed if the server died at its failpoint (a connection
    can close a moment before the process is gone, hence the wait)."""
    assert server.proc is not None
    try:
        code = server.proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        return  # alive: the failure is the caller's to report
    assert code == CRASH_EXIT_CODE, f"the server died with {code}: see {server.log_path}"
    raise Crashed


def drive(
    server: ServerProcess, prep: Prepared, acked: Acked, tmp: Path, *, attempts: int = 1
) -> None:
    """The workload to its end, from wherever a previous server left it (idempotent).

    `attempts` > 1: a refused call is sent again, as a client does with a throttled or
    failed request (the AWS fault matrix; a crash test wants the first failure)."""
    lam = _client(server, retries={"max_attempts": attempts, "mode": "standard"})
    try:
        resp = lam.invoke(
            FunctionName="flow",
            InvocationType="Event",
            Payload=json.dumps({"n": 7}).encode(),
            DurableExecutionName=EXECUTION,
        )
        arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
        assert acked.arn in (None, arn)
        acked.arn = arn
        deadline = time.monotonic() + 90
        while (ex := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] == "RUNNING":
            assert time.monotonic() < deadline, "the execution never completed"
            events = _history(lam, arn)
            started = [e for e in events if e["EventType"] == "CallbackStarted"]
            answered = any(e["EventType"] == "CallbackSucceeded" for e in events)
            if started and not answered:
                cid = started[0]["CallbackStartedDetails"]["CallbackId"]
                with contextlib.suppress(ClientError):  # answered since the read
                    lam.send_durable_execution_callback_success(CallbackId=cid, Result=b"yes")
                    acked.answered = True
            time.sleep(0.05)
        acked.results["flow"] = (ex["Status"], json.loads(ex.get("Result", "null")))
        env = git_env(tmp / "home")
        for _ in range(attempts):
            pushed = git(env, prep.work, "push", "-q", _git_url(server, prep.account), "main")
            if pushed.returncode == 0:
                break
            _raise_if_crashed(server)
            acked.refused_pushes += 1
            assert _tip(server, "app-src") != prep.commit, "a refused push moved the ref"
        assert pushed.returncode == 0, pushed.stderr
        acked.pushed = prep.commit
        body = {"repo": "app-src", "ref": "main", "path": "svc", "handler": "handler.handler"}
        for _ in range(attempts):
            status, version = v1(server, "POST", "/v1/functions/from-git/deploy", body)
            if status not in (429, 500, 503):
                break
            time.sleep(0.2)
        assert status == 201, version
        acked.deployed_tip = version["commitSha"]
        out = lam.invoke(FunctionName="from-git", Qualifier=version["version"])
        acked.results["from-git"] = json.loads(out["Payload"].read())
    except Exception:
        _raise_if_crashed(server)
        raise


def _check_acknowledged(server: ServerProcess, lam: Any, prep: Prepared, acked: Acked) -> None:
    """Right after the restart: everything acknowledged before the crash is there."""
    if acked.arn is not None:
        lam.get_durable_execution(DurableExecutionArn=acked.arn)
    if acked.answered:
        assert acked.arn is not None
        types = [e["EventType"] for e in _history(lam, acked.arn)]
        assert "CallbackSucceeded" in types, "an acknowledged callback answer was lost"
    if acked.pushed is not None:
        assert _tip(server, "app-src") == acked.pushed, "the pushed ref moved back"
    if acked.deployed_tip is not None:
        assert _tip(server, "functions") == acked.deployed_tip, "the functions ref moved back"
    assert _tip(server, "functions") is not None


def _leftovers(data: Path) -> list[Path]:
    """Temporary files and directories a writer cut short would leave."""
    found = []
    for path in data.rglob("*"):
        name = path.name
        if name.startswith((".tmp-", ".export-")) or ".deleted-" in name:
            found.append(path)
        elif path.is_dir() and path.parent.parent == data / "facets" and name.startswith("."):
            found.append(path)  # a facet being made (`.<name>.<random>`)
    return found


def check_final(server: ServerProcess, data: Path, prep: Prepared, acked: Acked) -> None:
    lam = _client(server)
    assert acked.arn is not None
    events = _history(lam, acked.arn)
    assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
    succeeded = Counter(e["Id"] for e in events if e["EventType"] == "StepSucceeded")
    assert succeeded and all(n == 1 for n in succeeded.values()), succeeded
    types = [e["EventType"] for e in events]
    assert types.count("ExecutionSucceeded") == 1 and types[-1] == "ExecutionSucceeded"
    assert types.count("CallbackSucceeded") == 1
    chained = lam.list_durable_executions_by_function(FunctionName="echo")["DurableExecutions"]
    assert len(chained) == 1 and chained[0]["Status"] == "SUCCEEDED", chained
    ledger = data / "facets" / prep.account / "ledger" / "db.sqlite"
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT count(*) FROM ledger").fetchone()[0] == 1
    finally:
        db.close()
    assert _tip(server, "app-src") == prep.commit
    assert _tip(server, "functions") not in (None, prep.functions_tip)  # the deploy's
    assert _leftovers(data) == []


def _survive(root: Path, prep: Prepared, failpoint: str, backend: Backend) -> tuple[bool, Acked]:
    """The workload on a copy of the prepared data (AWS: on data prepared anew), the
    server started with `failpoint`, then restarted without it and the workload
    finished and checked. Returns whether the failpoint was reached, and what the
    workload saw."""
    if backend.moto is None:
        data = root / "data"
        shutil.copytree(prep.data, data)
    else:
        prep = prepare(root, backend.env(), prep.pycache)
        data = prep.data
    acked = Acked()
    first = _server(data, prep.pycache, failpoint, prep.env)
    crashed = False
    failure: BaseException | None = None
    watch: Watch | None = None
    try:
        first.start()
        assert first.proc is not None
        watch = Watch(first.proc.pid)
        drive(first, prep, acked, root)
    except Crashed:
        crashed = True
    except RuntimeError as exc:  # died while starting, at its failpoint or not
        assert first.proc is not None
        if first.proc.wait(timeout=10) == CRASH_EXIT_CODE:
            crashed = True
        else:
            failure = exc
    except Exception as exc:
        failure = exc
    finally:
        first.stop()
        workers = watch.close() if watch is not None else set()
    # Started even after a failure: a crashed server's sandbox mounts stay until the
    # next start on its data directory, which removes them (and stop, below, too).
    second = _server(data, prep.pycache, backend_env=prep.env)
    second.start()
    try:
        if failure is not None:
            raise failure
        lam = _client(second)
        _check_acknowledged(second, lam, prep, acked)
        orphans = [pid for pid, started in workers if same_process_alive(pid, started)]
        assert orphans == [], f"workers of the crashed server still run: {orphans}"
        drive(second, prep, acked, root)
        check_final(second, data, prep, acked)
    finally:
        second.stop()
    return crashed, acked


@dataclass
class Baseline:
    backend: Backend
    prep: Prepared
    points: list[str]  # every failpoint: `<kind>:<position>:<k>`
    results: dict[str, Any]

    def key(self, name: str) -> str:
        """A tally's name (tests/conftest.py sums them per backend)."""
        return name if self.backend.moto is None else f"{name}@{self.backend.name}"


@pytest.fixture(
    scope="module",
    params=[
        "embedded",
        pytest.param(
            "aws",
            marks=pytest.mark.skipif(
                not os.environ.get(ENV_AWS), reason=f"nightly-style: make faults ({ENV_AWS}=1)"
            ),
        ),
    ],
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "embedded":
        yield Backend("embedded")
        return
    with moto_server() as url:
        yield Backend("aws", url)


@pytest.fixture(scope="module")
def baseline(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """The prepared data, and the boundaries and results of a run that does not crash."""
    root = tmp_path_factory.mktemp("boundaries")
    prep = prepare(root, backend.env(), root / "pycache")
    counts_file = root / "counts.json"
    crashed, acked = _survive(root / "count", prep, f"count:{counts_file}", backend)
    assert not crashed
    counts: dict[str, int] = json.loads(counts_file.read_text())
    points = [f"{key}:{k}" for key, n in sorted(counts.items()) for k in range(1, n + 1)]
    return Baseline(backend, prep, points, acked.results)


def test_the_workload_crosses_every_kind_of_boundary(
    baseline: Baseline, record_property: Callable[[str, object], None]
) -> None:
    before = sum(p.split(":")[1] == "before" for p in baseline.points)
    record_property(baseline.key("boundaries"), before)
    kinds = {point.rsplit(":", 1)[0] for point in baseline.points}
    assert kinds == {f"{k}:{p}" for k in Kind for p in ("before", "after")}
    flow_status, flow = baseline.results["flow"]
    assert flow_status == "SUCCEEDED"
    assert flow == FLOW_RESULT
    assert baseline.results["from-git"] == "from git"


@pytest.mark.parametrize("shard", range(SHARDS))
def test_a_crash_at_any_boundary_loses_nothing(
    baseline: Baseline,
    shard: int,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    points = baseline.points[shard::SHARDS]

    def one(i: int, point: str) -> bool:
        try:
            crashed, acked = _survive(tmp_path / str(i), baseline.prep, point, baseline.backend)
        except Exception as exc:
            raise AssertionError(f"after a crash at {point}: {exc!r}") from exc
        assert acked.results == baseline.results, point
        shutil.rmtree(tmp_path / str(i))
        return crashed

    # Two at a time: a run spends part of its time waiting (a server stopping, a
    # client polling) that the other fills.
    with ThreadPoolExecutor(POINTS_AT_ONCE) as pool:
        crashes = list(pool.map(one, range(len(points)), points))
    record_property(baseline.key("boundary_points"), len(points))
    record_property(baseline.key("boundary_crashes"), sum(crashes))
