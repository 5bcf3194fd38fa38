"""Running the official conformance requirements against `treadle dev` servers.

Each requirement's handler (written from its YAML under `handlers/<suite>/`) is deployed
through `create_function`, then `validate.validate_description` invokes it, reads the
history, answers callbacks and checks logs exactly as it does against AWS. All
requirements run concurrently in the background (waits dominate their time); each
parametrized test waits for its own result.

Requirements without external callback actions run on a server whose waits and step
retries use a skipping test clock (`--wait-time-scale`): recorded durations and
scheduled timestamps stay those asked for. Requirements whose validator answers
callbacks run on a second server with the real clock, because the order of a callback
answer and a wait's end is part of their expected history.

Backends: `embedded` (SQLite, in-process scheduler) or `aws` (`treadle dev --backend
aws`, each server on a moto server of its own started here, in its own process:
DynamoDB, S3, SQS, Lambda's control plane). moto's CPU grows with a table's size (it
copies the table for every transaction); in the test process it took a whole core
from the validators, and the callback requirements waited behind the step retries.
"""

from __future__ import annotations

import ast
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from aws_durable_execution_conformance_tests import validate
from aws_durable_execution_conformance_tests.clients import AwsClients
from aws_durable_execution_conformance_tests.config import TESTS_DIR
from aws_durable_execution_conformance_tests.sam import Invoker

from support.moto_server import aws_env, moto_process
from support.server import ServerProcess, client, deploy

# Every suite the conformance package ships (155 requirements in 1.0.0).
ALL_SUITES = ",".join(sorted({p.parent.name for p in Path(TESTS_DIR).glob("*/*.yaml")}))
HANDLERS = Path(
    os.environ.get("TREADLE_CONFORMANCE_HANDLERS") or Path(__file__).parent / "handlers"
)
# TREADLE_CONFORMANCE_WAIT_SCALE=1 runs everything on the real clock (over an hour:
# one requirement waits an hour).
WAIT_TIME_SCALE = float(os.environ.get("TREADLE_CONFORMANCE_WAIT_SCALE", "0.01"))
# How long one test may wait for its requirement (all of them run at once).
TEST_TIMEOUT_S = 900 if WAIT_TIME_SCALE < 1 else 3 * 3600
CONCURRENCY = 24

# Requirements declared not implemented, with the reason (shown in the report).
NOT_IMPLEMENTED: dict[str, str] = {}

Requirement = tuple[str, str, Path]  # suite, id, YAML


def _needs_real_clock(path: Path) -> bool:
    text = path.read_text()
    return "CallbackActions:" in text or "CallbackStarted" in text


# The validator looks at the history every 2 s (the package's default, made for AWS). Where
# a callback answer must land inside a running wait, that leaves the answer and the
# invocation it wakes about 2 s before the wait ends, too tight for 2 loaded cores: those
# requirements are polled every half second instead (the package's own AsyncConfig key).
PROMPT_POLL_S = 0.5


def _answers_inside_a_wait(text: str) -> bool:
    return "CallbackActions:" in text and "WaitStarted" in text


def _description_to_run(path: Path, workdir: Path) -> Path:
    """The requirement's YAML, or a copy that polls promptly (see PROMPT_POLL_S)."""
    text = path.read_text()
    if not _answers_inside_a_wait(text) or "AsyncConfig:" in text:
        return path
    copy = workdir / "descriptions" / path.parent.name / path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(f"{text.rstrip()}\nAsyncConfig:\n  PollIntervalSeconds: {PROMPT_POLL_S}\n")
    return copy


def requirements(suites: Sequence[str]) -> list[Requirement]:
    found = []
    for suite in suites:
        for path in sorted((Path(TESTS_DIR) / suite).glob("*.yaml")):
            found.append((suite, path.stem, path))
    return found


def _module_for(suite: str, rid: str) -> Path:
    return HANDLERS / suite / f"r{rid.replace('-', '_')}.py"


# CPython 3.11's AST converter keeps its recursion depth per interpreter, not per thread:
# two ast.parse at once in the pool's threads can fail with "AST constructor recursion
# depth mismatch" (SystemError; python/cpython gh-106905, fixed in later releases).
_PARSE = threading.Lock()


def _function_config(source: str) -> dict[str, Any]:
    """The handler's FUNCTION_CONFIG literal, read without importing the module."""
    with _PARSE:
        tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "FUNCTION_CONFIG" for t in node.targets
        ):
            return dict(ast.literal_eval(node.value))
    return {}


class _Invoker(Invoker):  # type: ignore[misc]
    """The package's invoker, minus CloudFormation: our names are physical already."""

    def _resolve_function(self, logical_id: str) -> str:
        return logical_id


class _Stack:
    """Stands in for CloudFormation: the log retriever asks it for physical names."""

    def describe_stack_resource(self, StackName: str, LogicalResourceId: str) -> dict[str, Any]:
        return {"StackResourceDetail": {"PhysicalResourceId": LogicalResourceId}}


class _Target:
    """One server and the clients the validator uses against it."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.lam = client(server)
        self.clients = AwsClients(
            MappingProxyType(
                {"lambda": self.lam, "logs": client(server, "logs"), "cloudformation": _Stack()}
            )
        )
        self.invoker = _Invoker(stack_name="treadle", region="us-east-1", lambda_client=self.lam)


class ConformanceRun:
    def __init__(
        self,
        fast: ServerProcess,
        real: ServerProcess,
        workdir: Path,
        suites: Sequence[str],
    ) -> None:
        self.fast = _Target(fast)
        self.real = _Target(real)
        self.workdir = workdir
        self.suites = list(suites)
        self.pool = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="conf")
        self.results: dict[str, Future[Any]] = {}
        self.lock = threading.Lock()

    def deploy_targets(self) -> None:
        """Functions a suite's handlers call (chained invokes): `<suite>/_<role>.py` is
        deployed as `conf-<suite>-<role>` on every server, before any requirement runs."""
        for suite in self.suites:
            for module in sorted((HANDLERS / suite).glob("_*.py")):
                role = module.stem.lstrip("_")
                for target in (self.fast, self.real):
                    deploy(
                        target.lam,
                        f"conf-{suite}-{role}",
                        {"handler.py": module.read_text()},
                        DurableConfig={"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1},
                        durable=False,
                    )

    def submit_all(self) -> None:
        self.deploy_targets()
        for suite, rid, path in requirements(self.suites):
            self.results[rid] = self.pool.submit(self._run, suite, rid, path)

    def _run(self, suite: str, rid: str, yaml_path: Path) -> Any:
        module = _module_for(suite, rid)
        if not module.exists():
            return f"no handler written at {module}"
        source = module.read_text()
        config = _function_config(source)
        target = self.real if _needs_real_clock(yaml_path) else self.fast
        name = f"conf-{suite}-{rid}"
        extra: dict[str, Any] = {}
        # Handlers name the functions they invoke from this prefix (see deploy_targets).
        variables = {"CONFORMANCE_TARGET_PREFIX": f"conf-{suite}-"}
        variables.update(config.get("Environment", {}))
        extra["Environment"] = {"Variables": variables}
        durable = {"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1}
        durable.update(config.get("DurableConfig", {}))
        deploy(
            target.lam,
            name,
            {"handler.py": source},
            timeout=int(config.get("Timeout", 60)),
            memory=int(config.get("MemorySize", 256)),
            durable=False,
            DurableConfig=durable,
            **extra,
        )
        out = self.workdir / "output"
        return validate.validate_description(
            function_name=name,
            description_id=rid,
            test_file=str(_description_to_run(yaml_path, self.workdir)),
            invoker=target.invoker,
            tmp_dir=str(self.workdir),
            region="us-east-1",
            aws_clients=target.clients,
            output_dir=str(out),
        )

    def check(self, rid: str) -> None:
        """The test of one requirement: wait for its result, fail with its errors."""
        if rid in NOT_IMPLEMENTED:
            pytest.skip(f"not implemented: {NOT_IMPLEMENTED[rid]}")
        result = self.results[rid].result(timeout=TEST_TIMEOUT_S - 60)
        if isinstance(result, str):
            pytest.fail(result)
        assert result.passed, "\n".join([*result.errors, *self._server_lines(rid)])

    def _server_lines(self, rid: str, keep: int = 60) -> list[str]:
        """What the servers logged about the requirement's functions: the temporary
        directory and its logs are gone once the run ends, and a rare failure (a hang
        after a callback on the AWS backend, seen once in CI) needs them."""
        names = re.compile(rf"-{re.escape(rid)}(?!\d)")
        lines: list[str] = []
        for target in (self.fast, self.real):
            try:
                text = target.server.log_path.read_text(errors="replace")
            except OSError:
                continue
            lines += [line for line in text.splitlines() if names.search(line)]
        if not lines:
            return []
        return ["", f"server log lines naming {rid} (last {keep}):", *lines[-keep:]]


@contextmanager
def conformance_run(suites: Sequence[str], backend: str = "embedded") -> Iterator[ConformanceRun]:
    """Two servers of `backend` (fast clock, real clock), every requirement submitted."""
    if backend not in ("embedded", "aws"):
        raise ValueError(f"unknown conformance backend {backend!r}")
    with tempfile.TemporaryDirectory(prefix="treadle-conf-") as tmp, ExitStack() as stack:
        fast_env: dict[str, str] = {}
        real_env: dict[str, str] = {}
        if backend == "aws":
            fast_env = aws_env(stack.enter_context(moto_process()), "conffast")
            real_env = aws_env(stack.enter_context(moto_process()), "confreal")
        fast = ServerProcess(Path(tmp) / "fast", wait_time_scale=WAIT_TIME_SCALE, env=fast_env)
        real = ServerProcess(Path(tmp) / "real", env=real_env)
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        fast.start()
        real.start()
        run = ConformanceRun(fast, real, Path(tmp), suites)
        try:
            run.submit_all()
            yield run
        finally:
            run.pool.shutdown(wait=False, cancel_futures=True)
            fast.stop()
            real.stop()
