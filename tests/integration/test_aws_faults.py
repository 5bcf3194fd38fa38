"""The AWS backend under injected faults (issue 18, point 2; docs/operating.md).

Each row of the matrix starts `treadle dev --backend aws` over a moto server with one
fault armed in its boto3 clients (support/aws_faults.py, support/faulty_server.py),
runs the crash test's workload (tests/integration/test_commit_boundaries.py: a step
retried, a wait, a callback, a child context, a chained invoke, a map of 3, a facet
written once, a git push and a deploy from it) as a client would, sending a refused
call again, and checks the crash test's invariants on the result: the same results as
the run without faults, history event ids dense, each step's result recorded once,
the callback not lost, the chained execution once, the facet's effect once, the refs
where the acknowledged push and deploy put them, no temporary file left.

Nightly-style (`make faults`, TREADLE_FAULTS_AWS=1): a row takes 15-30 s.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_commit_boundaries as boundaries

from support import faulty_server
from support.aws_faults import FAULTS, read_log
from support.boundaries import FLOW_RESULT
from support.moto_server import moto_server
from support.server import ServerProcess, client

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get(boundaries.ENV_AWS),
        reason=f"nightly-style: make faults ({boundaries.ENV_AWS}=1)",
    ),
]

SEED = 18
ATTEMPTS = 10  # a client sends a refused call again, up to this many times
TESTS_DIR = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pycache")


def _faulty(prep: boundaries.Prepared, fault: str, log: Path, arm: Path) -> ServerProcess:
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        **prep.env,
        "PYTHONPATH": path,
        "PYTHONPYCACHEPREFIX": str(prep.pycache),
        "PYTHONDONTWRITEBYTECODE": "",
        faulty_server.ENV_FAULT: fault,
        faulty_server.ENV_SEED: str(SEED),
        faulty_server.ENV_LOG: str(log),
        faulty_server.ENV_ARM: str(arm),
    }
    return ServerProcess(
        prep.data,
        wait_time_scale=boundaries.WAIT_TIME_SCALE,
        env=env,
        module="support.faulty_server",
    )


@pytest.mark.parametrize("fault", ["", *FAULTS])
def test_the_workload_keeps_its_invariants_under_the_fault(
    fault: str,
    moto: str,
    pycache: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    backend = boundaries.Backend("aws", moto)
    prep = boundaries.prepare(tmp_path, backend.env(), pycache)
    log, arm = tmp_path / "faults.jsonl", tmp_path / "armed"
    server = _faulty(prep, fault, log, arm)
    server.start()
    acked = boundaries.Acked()
    try:
        arm.touch()
        boundaries.drive(server, prep, acked, tmp_path, attempts=ATTEMPTS)
        arm.unlink()  # the checks read without faults
        boundaries.check_final(server, prep.data, prep, acked)
        assert acked.arn is not None
        events = client(server).get_durable_execution_history(
            DurableExecutionArn=acked.arn, MaxItems=1000
        )["Events"]
        ended = [json.dumps(e, default=str) for e in events]
        ended = [e for e in ended if "InvocationCompleted" in e]
        crashed = [e for e in ended if "Runtime.ExitError" in e]
        timed_out = sum("Sandbox.Timedout" in e for e in ended)
    finally:
        server.stop()
    assert acked.results == {"flow": ("SUCCEEDED", FLOW_RESULT), "from-git": "from git"}
    seen = Counter(line["what"] for line in read_log(log))
    if fault:
        assert seen["injected"] >= 1, f"{fault} was never injected: the row proves nothing"
    if fault == "s3-pack-503":
        assert acked.refused_pushes >= 1
    if fault.startswith(("sqs-", "lambda-throttled", "s3-")) or not fault:
        # A copy of a timer message is not a lease that ran out, nor is a refused
        # Invoke: no invocation is counted as crashed (Runtime.ExitError).
        assert crashed == [], crashed
    if fault == "lambda-timeout":
        assert timed_out >= 1  # reported as the runtime's timeout, then retried
    if fault == "ddb-throttled-orchestrator":
        # The orchestrator reported the failed records and they were delivered again.
        assert seen["redelivery"] >= 1
    record_property(
        "fault_row",
        f"{fault or 'none'}|{seen['injected']}|{seen['redelivery']}|{acked.refused_pushes}",
    )
