"""The local sandbox against the Lambda Python runtime contract, with real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from support.processes import alive, result, wait_gone
from treadle.adapters.sandbox import InvocationOutcome, LocalSandbox, SandboxFunction

ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn:3"

COMMON = """
import os, sys, time, json, logging, subprocess

def info(event, context):
    return {"pid": os.getpid(), "ppid": os.getppid()}

def echo(event, context):
    return event

def sleepy(event, context):
    time.sleep(event.get("seconds", 0.3))
    return {"pid": os.getpid()}

def environment(event, context):
    with open("/proc/self/environ", "rb") as f:
        raw = f.read()
    return {
        "env": dict(os.environ),
        "raw_environ": raw.decode(errors="replace"),
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "tmp_exists": os.path.isdir(os.environ["TMPDIR"]),
        "tz": time.strftime("%Z"),
        "platform_modules": sorted(
            m for m in sys.modules
            if m.partition(".")[0] in ("pydantic", "uvicorn", "rich")
            or m.startswith("treadle.") and not m.startswith("treadle.adapters")
            or m.startswith("treadle.adapters.") and not m.startswith("treadle.adapters.sandbox")
        ),
    }

def ctx(event, context):
    c = context
    return {
        "aws_request_id": c.aws_request_id,
        "function_name": c.function_name,
        "function_version": c.function_version,
        "invoked_function_arn": c.invoked_function_arn,
        "memory_limit_in_mb": c.memory_limit_in_mb,
        "log_group_name": c.log_group_name,
        "log_stream_name": c.log_stream_name,
        "remaining": c.get_remaining_time_in_millis(),
        "identity": [c.identity.cognito_identity_id, c.identity.cognito_identity_pool_id],
        "client_context": c.client_context,
        "tenant_id": c.tenant_id,
    }
"""

ERRORS = """
import ctypes, datetime, os, signal, subprocess, sys, time

class PaymentDeclined(Exception):
    pass

def fail(event, context):
    raise PaymentDeclined("card expired")

def flaky(event, context):
    if event.get("fail"):
        raise PaymentDeclined(str(os.getpid()))
    if event.get("marshal"):
        return {"when": datetime.datetime(2024, 1, 1)}
    return {"pid": os.getpid()}

def crash(event, context):
    print("about to", event["how"])
    how = event["how"]
    if how == "exit3":
        sys.exit(3)
    if how == "exit0":
        os._exit(0)
    if how == "segv":
        ctypes.string_at(0)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return {"pid": os.getpid()}

def hang(event, context):
    child = subprocess.Popen(["sleep", "30"])
    with open(event["pidfile"], "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    print("hanging")
    time.sleep(30)

def grow(event, context):
    chunks = []
    for _ in range(event["chunks"]):
        chunks.append(b"\\x01" * (8 << 20))  # touched, so resident
        time.sleep(0.01)
    if not event.get("keep", True):
        chunks.clear()
    time.sleep(event.get("hold", 0))
    return {"survived_mb": 8 * event["chunks"]}

def huge(event, context):
    try:
        blob = b"x" * (4 << 30)
    except MemoryError:
        if event.get("catch"):
            return "refused"
        raise
    return len(blob)
"""

LOGS = """
import logging, sys
from aws_durable_execution_sdk_python.logger import Logger

log = logging.getLogger("tenant")

def handler(event, context):
    print("first line")
    log.info("info %s", "arg", extra={"executionArn": "arn:exec", "operationId": "op-1"})
    log.debug("debug line")
    sys.stderr.write("to stderr\\n")
    print("multi\\nline")
    Logger(log, {"executionArn": "arn:sdk"}).info("from sdk", extra={"operationId": "op-2"})
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed")
    return "ok"
"""

BOTO = """
import boto3

def handler(event, context):
    client = boto3.client("lambda")
    creds = client._request_signer._credentials
    return {
        "region": client.meta.region_name,
        "endpoint": client.meta.endpoint_url,
        "key": creds.access_key if creds else None,
    }
"""


def write_code(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def function(code_dir: Path, handler: str, **overrides: Any) -> SandboxFunction:
    fields: dict[str, Any] = {
        "key": f"tenant/fn/3/{uuid.uuid4().hex}",
        "code_dir": code_dir,
        "handler": handler,
        "function_name": "fn",
        "function_version": "3",
        "invoked_function_arn": ARN,
        "memory_mb": 256,
        "timeout_s": 10.0,
        "environment": {"GREETING": "hi"},
        "log_group": "/aws/lambda/fn",
    }
    fields.update(overrides)
    return SandboxFunction(**fields)


def call(sb: LocalSandbox, fn: SandboxFunction, event: Any = None) -> InvocationOutcome:
    return sb.invoke(fn, json.dumps(event if event is not None else {}).encode(), uuid4())


def uuid4() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("code")
    return write_code(root, {"common.py": COMMON, "errors.py": ERRORS, "logs.py": LOGS})


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSandbox]:
    sb = LocalSandbox(work_dir=tmp_path_factory.mktemp("sandbox"), max_warm_per_function=2)
    sb.start()
    sb.start()  # idempotent
    try:
        yield sb
    finally:
        sb.close()


def test_cold_start_forks_from_the_zygote_in_milliseconds(
    sandbox: LocalSandbox, code: Path
) -> None:
    cold, warm = [], []
    first = None
    for _ in range(5):
        fn = function(code, "common.info")
        started = time.perf_counter()
        first = result(call(sandbox, fn))
        cold.append((time.perf_counter() - started) * 1000)
        for _ in range(5):
            started = time.perf_counter()
            again = result(call(sandbox, fn))
            warm.append((time.perf_counter() - started) * 1000)
            assert again["pid"] == first["pid"]
    assert first is not None
    # Workers are children of the zygote, never of this (multi-threaded) process.
    assert first["ppid"] != os.getpid()
    cmdline = Path(f"/proc/{first['ppid']}/cmdline").read_bytes()
    assert b"treadle.adapters.sandbox.zygote" in cmdline
    print(
        f"\nsandbox latency: cold median {statistics.median(cold):.1f} ms "
        f"(min {min(cold):.1f}), warm median {statistics.median(warm):.2f} ms "
        f"(min {min(warm):.2f})"
    )


def test_handler_forms_and_payload_roundtrip(sandbox: LocalSandbox, tmp_path: Path) -> None:
    root = write_code(
        tmp_path / "code",
        {
            "lib/mod.py": "def run(event, context):\n    return {'where': 'dir/module'}\n",
            "pkg/__init__.py": "",
            "pkg/inner.py": "def run(event, context):\n    return {'where': 'pkg.module'}\n",
            "app.py": "def echo(event, context):\n    return event\n",
        },
    )
    assert result(call(sandbox, function(root, "lib/mod.run"))) == {"where": "dir/module"}
    assert result(call(sandbox, function(root, "pkg.inner.run"))) == {"where": "pkg.module"}
    echo = function(root, "app.echo")
    assert result(sandbox.invoke(echo, b"", uuid4())) == {}  # no payload: an empty object
    event = {"data": "x" * (6 * 1024 * 1024 - 64), "n": [1, 2.5, None, True]}
    raw = json.dumps(event).encode()
    outcome = sandbox.invoke(echo, raw, uuid4())
    assert outcome.payload == raw


def test_warm_workers_are_reused_and_concurrency_uses_distinct_ones(
    sandbox: LocalSandbox, code: Path
) -> None:
    fn = function(code, "common.sleepy")
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda _: call(sandbox, fn, {"seconds": 0.3}), range(4)))
    pids = [result(o)["pid"] for o in outcomes]
    assert len(set(pids)) == 4  # one invocation per worker at a time
    # max_warm_per_function=2: the two surplus workers are not kept.
    deadline = time.monotonic() + 5
    while sum(alive(p) for p in pids) > 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sum(alive(p) for p in pids) == 2
    again = {result(call(sandbox, fn, {"seconds": 0}))["pid"] for _ in range(3)}
    assert len(again) == 1 and again <= set(pids)


def test_least_recently_used_idle_worker_is_evicted_at_max_workers(
    tmp_path: Path, code: Path
) -> None:
    sb = LocalSandbox(work_dir=tmp_path / "sb", max_workers=2)
    sb.start()
    try:
        a, b, c = (function(code, "common.info") for _ in range(3))
        pid_a = result(call(sb, a))["pid"]
        pid_b = result(call(sb, b))["pid"]
        pid_c = result(call(sb, c))["pid"]  # evicts a, the least recently used
        assert wait_gone(pid_a)
        assert result(call(sb, b))["pid"] == pid_b
        assert result(call(sb, a))["pid"] not in (pid_a, pid_b, pid_c)  # evicts c
        assert wait_gone(pid_c)
        assert alive(pid_b)
        sb.evict(b.key)
        assert wait_gone(pid_b)
    finally:
        sb.close()


TMP_NOTES = """
import os, time

def note(event, context):
    path = os.path.join(os.environ["TMPDIR"], "note")
    if event.get("crash"):
        os._exit(3)
    time.sleep(event.get("sleep", 0))
    if "write" in event:
        with open(path, "w") as f:
            f.write(event["write"])
    read = open(path).read() if os.path.exists(path) else None
    return {"pid": os.getpid(), "note": read, "tmp": os.environ["TMPDIR"]}
"""


def _host_tmp(sb: LocalSandbox, fn: SandboxFunction) -> Path:
    return Path(sb._tmps.path(fn.key))


def _mounted(path: Path) -> bool:
    points = (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return os.path.realpath(path) in points


def test_an_environment_reclaimed_as_least_recently_used_takes_its_tmp_with_it(
    tmp_path: Path,
) -> None:
    """As Lambda reclaims an idle environment: its /tmp (a tmpfs, so memory) goes too, not
    at the version's next update or the server's restart."""
    notes = write_code(tmp_path / "notes", {"notes.py": TMP_NOTES})
    sb = LocalSandbox(work_dir=tmp_path / "sb", max_workers=2)
    sb.start()
    try:
        a, b, c = (function(notes, "notes.note") for _ in range(3))
        first = result(call(sb, a, {"write": "kept in a's environment"}))
        assert first["note"] == "kept in a's environment"
        assert _host_tmp(sb, a).is_dir()
        if os.geteuid() == 0:
            assert _mounted(_host_tmp(sb, a))
        result(call(sb, b))
        result(call(sb, c))  # at max_workers: a's worker, the least recently used, goes
        assert wait_gone(first["pid"])
        assert not _host_tmp(sb, a).exists()
        assert not _mounted(_host_tmp(sb, a))
        assert not any(p.name.startswith(".retired-") for p in _host_tmp(sb, a).parent.iterdir())
        again = result(call(sb, a))  # a new environment: an empty /tmp
        assert again["pid"] != first["pid"] and again["note"] is None
    finally:
        sb.close()


def test_a_worker_replacing_a_crashed_one_still_sees_its_environments_tmp(
    tmp_path: Path,
) -> None:
    notes = write_code(tmp_path / "notes", {"notes.py": TMP_NOTES})
    sb = LocalSandbox(work_dir=tmp_path / "sb", max_workers=2)
    sb.start()
    try:
        a = function(notes, "notes.note")
        first = result(call(sb, a, {"write": "before the crash"}))
        crashed = call(sb, a, {"crash": True})
        assert crashed.error is not None  # the runtime exited
        after = result(call(sb, a))
        assert after["pid"] != first["pid"] and after["note"] == "before the crash"
    finally:
        sb.close()


def test_reclaiming_one_idle_worker_keeps_the_tmp_its_busy_sibling_uses(tmp_path: Path) -> None:
    notes = write_code(tmp_path / "notes", {"notes.py": TMP_NOTES})
    sb = LocalSandbox(work_dir=tmp_path / "sb", max_workers=2, max_warm_per_function=2)
    sb.start()
    try:
        a, other = function(notes, "notes.note"), function(notes, "notes.note")
        result(call(sb, a, {"write": "shared"}))
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(call, sb, a, {"sleep": 2})  # the warm worker, kept busy
            time.sleep(0.5)
            second = result(call(sb, a))  # a second worker of `a`, idle after this
            # At max_workers: the idle worker of `a` goes, its busy sibling stays, and
            # so does their environment's /tmp.
            result(call(sb, other))
            assert wait_gone(second["pid"])
            assert _host_tmp(sb, a).is_dir()
            assert result(busy.result())["note"] == "shared"
        assert result(call(sb, a))["note"] == "shared"
    finally:
        sb.close()


def test_context_object(sandbox: LocalSandbox, code: Path) -> None:
    fn = function(code, "common.ctx", timeout_s=7.0)
    request_id = uuid4()
    got = result(sandbox.invoke(fn, b"{}", request_id))
    assert got["aws_request_id"] == request_id
    assert got["function_name"] == "fn"
    assert got["function_version"] == "3"
    assert got["invoked_function_arn"] == ARN
    assert got["memory_limit_in_mb"] == "256"  # a str, as awslambdaric reads it from the env
    assert got["log_group_name"] == "/aws/lambda/fn"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[3\][0-9a-f]{32}", got["log_stream_name"])
    assert 5000 < got["remaining"] <= 7000
    assert got["identity"] == [None, None]
    assert got["client_context"] is None
    assert got["tenant_id"] is None


def test_error_payloads(sandbox: LocalSandbox, code: Path, tmp_path: Path) -> None:
    request_id = uuid4()
    failed = sandbox.invoke(function(code, "errors.fail"), b"{}", request_id)
    assert failed.payload is None and failed.error is not None
    assert failed.error["errorType"] == "PaymentDeclined"
    assert failed.error["errorMessage"] == "card expired"
    assert failed.error["requestId"] == request_id
    trace = failed.error["stackTrace"]
    assert len(trace) == 1 and "errors.py" in trace[0] and "in fail" in trace[0]
    assert "raise PaymentDeclined" in trace[0]
    logged = json.loads(failed.logs[-1])  # awslambdaric logs the error too
    assert logged["level"] == "ERROR" and logged["errorType"] == "PaymentDeclined"

    missing = call(sandbox, function(code, "nothere.handler")).error
    assert missing is not None
    assert missing["errorType"] == "Runtime.ImportModuleError"
    assert missing["errorMessage"] == (
        "Unable to import module 'nothere': No module named 'nothere'"
    )
    broken = write_code(tmp_path / "broken", {"app.py": "import requests_not_installed\n"})
    dependency = call(sandbox, function(broken, "app.handler")).error
    assert dependency is not None and dependency["errorType"] == "Runtime.ImportModuleError"
    assert dependency["errorMessage"] == (
        "Unable to import module 'app': No module named 'requests_not_installed'"
    )
    absent = call(sandbox, function(code, "common.nope")).error
    assert absent == {
        "errorType": "Runtime.HandlerNotFound",
        "errorMessage": "Handler 'nope' missing on module 'common'",
        "requestId": "",
        "stackTrace": [],
    }

    flaky = function(code, "errors.flaky")
    pid = result(call(sandbox, flaky))["pid"]
    marshal = call(sandbox, flaky, {"marshal": True})
    assert marshal.error is not None
    assert marshal.error["errorType"] == "Runtime.MarshalError"
    assert marshal.error["errorMessage"] == (
        "Unable to marshal response: Object of type datetime is not JSON serializable"
    )
    assert marshal.error["stackTrace"] == []
    raised = call(sandbox, flaky, {"fail": True}).error
    assert raised is not None and raised["errorMessage"] == str(pid)
    # Handled errors leave the worker warm, as in Lambda.
    assert result(call(sandbox, flaky)) == {"pid": pid}


@pytest.mark.parametrize(
    ("how", "detail"),
    [
        ("exit3", "Runtime exited with error: exit status 3"),
        ("exit0", "Runtime exited without providing a reason"),
        ("segv", "Runtime exited with error: signal: segmentation fault"),
        ("kill", "Runtime exited with error: signal: killed"),
    ],
)
def test_process_exit_is_runtime_exit_error(
    sandbox: LocalSandbox, code: Path, how: str, detail: str
) -> None:
    fn = function(code, "errors.crash")
    before = result(call(sandbox, fn, {"how": "ok"}))["pid"]
    request_id = uuid4()
    outcome = sandbox.invoke(fn, json.dumps({"how": how}).encode(), request_id)
    assert outcome.error == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id} Error: {detail}",
    }
    assert outcome.logs == [f"about to {how}"]
    assert wait_gone(before)  # reaped by the zygote, not left a zombie
    after = result(call(sandbox, fn, {"how": "ok"}))["pid"]
    assert after != before


def test_timeout_kills_the_worker_and_its_subprocesses(
    sandbox: LocalSandbox, code: Path, tmp_path: Path
) -> None:
    fn = function(code, "errors.hang", timeout_s=1.0)
    pidfile = tmp_path / "pids"
    request_id = uuid4()
    started = time.monotonic()
    outcome = sandbox.invoke(fn, json.dumps({"pidfile": str(pidfile)}).encode(), request_id)
    assert time.monotonic() - started < 5
    assert outcome.error == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {request_id} Error: Task timed out after 1.00 seconds",
    }
    assert outcome.logs == ["hanging"]
    worker, child = (int(p) for p in pidfile.read_text().split())
    assert wait_gone(worker)
    assert wait_gone(child)
    assert result(call(sandbox, function(code, "common.info", key=fn.key)))["pid"] != worker


def test_memory_limit(sandbox: LocalSandbox, code: Path) -> None:
    grow = function(code, "errors.grow", memory_mb=128, timeout_s=10.0)
    request_id = uuid4()
    # 296 MB, slowly, then held: below the RLIMIT_DATA backstop, so only the RSS
    # watchdog can end this before the timeout.
    event = {"chunks": 37, "hold": 30}
    outcome = sandbox.invoke(grow, json.dumps(event).encode(), request_id)
    assert outcome.error == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
    }
    # A peak counts even if freed before returning, as it would have met the cgroup.
    outcome = call(sandbox, grow, {"chunks": 24, "keep": False})
    assert outcome.error is not None and outcome.error["errorType"] == "Runtime.OutOfMemory"
    huge = function(code, "errors.huge", memory_mb=128)
    outcome = call(sandbox, huge)  # 4 GB at once
    assert outcome.error is not None and outcome.error["errorType"] == "Runtime.OutOfMemory"
    # ...is refused by RLIMIT_DATA before it is touched: the allocation itself fails.
    assert result(call(sandbox, huge, {"catch": True})) == "refused"
    assert result(call(sandbox, grow, {"chunks": 2})) == {"survived_mb": 16}


def test_scrubbed_environment(tmp_path: Path, code: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREADLE_TEST_SECRET", "s3cr3t-value")
    work_dir = tmp_path / "sb"
    sb = LocalSandbox(work_dir=work_dir)
    sb.start()
    try:
        fn = function(code, "common.environment", environment={"AWS_REGION": "eu-west-1"})
        got = result(call(sb, fn))
    finally:
        sb.close()
    env = got["env"]
    assert "TREADLE_TEST_SECRET" not in env
    assert "s3cr3t-value" not in got["raw_environ"]  # not even in the process image
    expected = {
        "PATH",
        "LANG",
        "TZ",
        "TMPDIR",
        "HOME",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_LOG_FORMAT",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_EXECUTION_ENV",
        "_HANDLER",
        "AWS_REGION",
    }
    assert set(env) == expected
    assert env["TZ"] == ":UTC" and got["tz"] == "UTC"
    assert env["LAMBDA_TASK_ROOT"] == str(code) == got["cwd"] == got["path0"]
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_FORMAT"] == "JSON"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["_HANDLER"] == "common.environment"
    assert env["AWS_REGION"] == "eu-west-1"
    tmp = Path(env["TMPDIR"])
    assert env["HOME"] == str(tmp) and got["tmp_exists"]
    assert tmp.is_relative_to(work_dir)
    assert not tmp.exists()  # removed with the sandbox
    assert got["platform_modules"] == []  # the zygote imports none of the server's code


def test_logs_in_order_with_lambda_json_records(sandbox: LocalSandbox, code: Path) -> None:
    request_id = uuid4()
    outcome = sandbox.invoke(function(code, "logs.handler"), b"{}", request_id)
    assert result(outcome) == "ok"
    lines = outcome.logs
    assert lines[0] == "first line"
    assert lines[2] == "to stderr"
    assert lines[3:5] == ["multi", "line"]
    info, sdk, failure = json.loads(lines[1]), json.loads(lines[5]), json.loads(lines[6])
    assert len(lines) == 7  # DEBUG is below the default level, INFO
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["timestamp"])
    assert info == {
        "timestamp": info["timestamp"],
        "level": "INFO",
        "message": "info arg",
        "logger": "tenant",
        "requestId": request_id,
        "executionArn": "arn:exec",
        "operationId": "op-1",
    }
    assert sdk["executionArn"] == "arn:sdk" and sdk["operationId"] == "op-2"
    assert sdk["message"] == "from sdk"
    assert failure["level"] == "ERROR" and failure["errorType"] == "ZeroDivisionError"
    assert failure["errorMessage"] == "division by zero"
    assert failure["stackTrace"] and failure["location"].endswith(":handler:17")

    debug = function(code, "logs.handler", environment={"AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    lines = call(sandbox, debug).logs
    assert json.loads(lines[2])["message"] == "debug line"


def test_bundled_sdk_wins_over_the_preloaded_one(sandbox: LocalSandbox, tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "PRELOADED = 'aws_durable_execution_sdk_python' in sys.modules\n"
        "import aws_durable_execution_sdk_python as sdk\n"
        "def handler(event, context):\n"
        "    return {'preloaded': PRELOADED, 'marker': getattr(sdk, 'MARKER', None)}\n"
    )
    plain = write_code(tmp_path / "plain", {"app.py": probe})
    bundled = write_code(
        tmp_path / "bundled",
        {"app.py": probe, "aws_durable_execution_sdk_python/__init__.py": "MARKER = 'bundled'\n"},
    )
    assert result(call(sandbox, function(plain, "app.handler"))) == {
        "preloaded": True,
        "marker": None,
    }
    assert result(call(sandbox, function(bundled, "app.handler"))) == {
        "preloaded": False,
        "marker": "bundled",
    }


def test_boto3_reads_the_function_environment(sandbox: LocalSandbox, tmp_path: Path) -> None:
    root = write_code(tmp_path / "boto", {"app.py": BOTO})
    env = {
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIDTREADLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    got = result(call(sandbox, function(root, "app.handler", environment=env)))
    assert got == {"region": "eu-west-3", "endpoint": "http://127.0.0.1:9", "key": "AKIDTREADLE"}
    config = tmp_path / "aws-config"
    config.write_text("[profile other]\nregion = ap-south-1\n")
    env = {
        "AWS_CONFIG_FILE": str(config),
        "AWS_PROFILE": "other",
        "AWS_ACCESS_KEY_ID": "A",
        "AWS_SECRET_ACCESS_KEY": "B",
    }
    got = result(call(sandbox, function(root, "app.handler", environment=env)))
    assert got["region"] == "ap-south-1"


def test_zygote_death_is_survived(tmp_path: Path, code: Path) -> None:
    sb = LocalSandbox(work_dir=tmp_path / "sb")
    sb.start()
    try:
        fn = function(code, "common.info")
        first = result(call(sb, fn))
        os.kill(first["ppid"], signal.SIGKILL)
        assert wait_gone(first["pid"])  # PR_SET_PDEATHSIG: workers die with the zygote
        second = result(call(sb, fn))
        assert second["ppid"] != first["ppid"]
        assert wait_gone(first["ppid"])
    finally:
        sb.close()


def test_close_leaves_no_process_behind(tmp_path: Path, code: Path) -> None:
    work_dir = tmp_path / "sb"
    sb = LocalSandbox(work_dir=work_dir)
    sb.start()
    pids: set[int] = set()
    for _ in range(3):
        got = result(call(sb, function(code, "common.info")))
        pids |= {got["pid"], got["ppid"]}
    pidfile = tmp_path / "pids"
    busy: list[InvocationOutcome] = []
    hang = function(code, "errors.hang", timeout_s=60.0)
    thread = threading.Thread(
        target=lambda: busy.append(call(sb, hang, {"pidfile": str(pidfile)})), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    pids |= {int(p) for p in pidfile.read_text().split()}
    sb.close()
    thread.join(timeout=10)
    assert busy and busy[0].error is not None
    assert busy[0].error["errorType"] == "Runtime.ExitError"
    assert len(pids) == 6
    assert [p for p in pids if not wait_gone(p)] == []
    assert not (work_dir / "tmp").exists()
    with pytest.raises(RuntimeError):
        call(sb, function(code, "common.info"))
