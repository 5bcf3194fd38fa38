"""`/metrics` after real executions: AWS's durable metric names, exact counts per tenant
and function; who may read which series; the server's JSON status lines."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from support.server import ServerProcess, basic, client, deploy, http, new_tenant, signed
from support.workflows import WORKFLOW

TOKEN = "scrape-token-0123456789"
TENANT = "123456789012"
FAILING = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    raise ValueError("no")
"""
SERIES = re.compile(r'^(\w+)\{function="([^"]+)",tenant="(\d+)"\} (\S+)$')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path_factory.mktemp("metrics") / "data",
        env={"TREADLE_METRICS_TOKEN": TOKEN, "TREADLE_LOG_FORMAT": "json"},
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ran(server: ServerProcess) -> list[str]:
    """Two successes and one stop of `metered`, one failure of `failing`."""
    lam = client(server)
    deploy(lam, "metered", {"handler.py": WORKFLOW})
    deploy(lam, "failing", {"handler.py": FAILING})
    arns = []
    for n in (1, 2):
        resp = lam.invoke(FunctionName="metered", Payload=json.dumps({"n": n}))
        assert json.loads(resp["Payload"].read()) == {"first": n * 2}
        arns.append(resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])
    lam.invoke(FunctionName="failing", Payload=b"{}")
    waiting = lam.invoke(
        FunctionName="metered",
        InvocationType="Event",
        Payload=json.dumps({"n": 3, "callback": True}),
        DurableExecutionName="waiting",
    )
    arn = waiting["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    lam.stop_durable_execution(DurableExecutionArn=arn)
    return [*arns, arn]


def scrape(server: ServerProcess, headers: dict[str, str]) -> tuple[int, str]:
    status, _, body = http(server, "GET", "/metrics", headers=headers)
    return status, body.decode()


def series(text: str) -> dict[tuple[str, str, str], float]:
    found = {}
    for line in text.splitlines():
        match = SERIES.match(line)
        if match:
            found[(match[1], match[2], match[3])] = float(match[4])
    return found


EXPECTED = {
    ("DurableExecutionStarted_total", "metered", TENANT): 3.0,
    ("DurableExecutionSucceeded_total", "metered", TENANT): 2.0,
    ("DurableExecutionStopped_total", "metered", TENANT): 1.0,
    ("DurableExecutionStarted_total", "failing", TENANT): 1.0,
    ("DurableExecutionFailed_total", "failing", TENANT): 1.0,
    ("ApproximateRunningDurableExecutions", "metered", TENANT): 0.0,
    ("ApproximateRunningDurableExecutions", "failing", TENANT): 0.0,
    ("DurableExecutionDuration_count", "metered", TENANT): 3.0,
    ("DurableExecutionDuration_count", "failing", TENANT): 1.0,
}


def test_the_scraper_token_reads_exact_counts_with_aws_names(
    server: ServerProcess, ran: list[str]
) -> None:
    status, text = scrape(server, {"authorization": f"Bearer {TOKEN}"})
    assert status == 200
    got = series(text)
    for key, value in EXPECTED.items():
        assert got.get(key) == value, key
    assert not any(name.startswith("DurableExecutionTimedOut") for name, _, _ in got)
    # Every invocation counted: at least one per synchronous run (the stopped one may
    # have been stopped before its first), replays add more.
    assert got[("Invocations_total", "metered", TENANT)] >= 2
    assert (
        got[("Duration_count", "failing", TENANT)] == got[("Invocations_total", "failing", TENANT)]
    )


def test_the_admin_reads_the_same_and_a_tenant_only_its_own(
    server: ServerProcess, ran: list[str]
) -> None:
    signed_admin = signed(
        server, "GET", "/metrics", credentials=server.credentials("treadle-admin")
    )
    assert series(scrape(server, signed_admin)[1]).items() >= EXPECTED.items()
    status, own = scrape(server, basic(server.credentials()))
    assert status == 200 and series(own).items() >= EXPECTED.items()
    # The attacker: a tenant with its own key sees none of the first tenant's series.
    other, key = new_tenant(server, "metrics-attacker")
    status, theirs = scrape(server, basic(key))
    assert status == 200
    assert "DurableExecutionStarted" in theirs  # the metric, without anyone's series
    assert all(tenant == other for _, _, tenant in series(theirs))
    assert TENANT not in theirs


@pytest.mark.parametrize(
    ("headers", "want"),
    [
        ({}, (403, "MissingAuthenticationTokenException")),
        ({"authorization": "Bearer wrong-token-0123456789"}, (403, "AccessDeniedException")),
        (basic(("AKIAUNKNOWN0000000", "x")), (401, "UnrecognizedClientException")),
    ],
)
def test_anyone_else_is_refused_in_the_v1_error_shape(
    server: ServerProcess, headers: dict[str, str], want: tuple[int, str]
) -> None:
    status, text = scrape(server, headers)
    error: dict[str, Any] = json.loads(text)["error"]
    assert (status, error["code"]) == want, error
    assert error["message"] and TENANT not in text


def test_the_server_logs_each_status_change_as_a_json_line(
    server: ServerProcess, ran: list[str]
) -> None:
    text = server.log_path.read_text().splitlines()
    lines = [json.loads(line) for line in text if line.startswith("{")]
    changes = [line for line in lines if line.get("logger") == "treadle.executions"]
    by_arn: dict[str, list[str]] = {}
    for line in changes:
        by_arn.setdefault(line["execution_arn"], []).append(line["status"])
    assert by_arn[ran[0]] == ["RUNNING", "SUCCEEDED"]
    assert by_arn[ran[2]] == ["RUNNING", "STOPPED"]
    first = next(line for line in changes if line["execution_arn"] == ran[0])
    assert first["tenant"] == TENANT and first["function"] == "metered"
    assert first["level"] == "INFO" and first["time"].endswith("+00:00")


TRACED = (
    "import os\n\ndef handler(event, context):\n    return os.environ.get('_X_AMZN_TRACE_ID')\n"
)
TRACE_HEADER = re.compile(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]")


def test_tenant_code_gets_a_fresh_trace_header_per_invocation_as_on_lambda(
    server: ServerProcess,
) -> None:
    lam = client(server)
    deploy(lam, "traced", {"handler.py": TRACED}, durable=False)
    seen = [json.loads(lam.invoke(FunctionName="traced")["Payload"].read()) for _ in range(2)]
    assert all(isinstance(h, str) and TRACE_HEADER.fullmatch(h) for h in seen), seen
    assert seen[0] != seen[1]


TRACED_DURABLE = """
import os
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def handler(event, context: DurableContext):
    first = context.step(lambda _: os.environ.get("_X_AMZN_TRACE_ID"), name="seen")
    context.wait(Duration.from_seconds(1), name="pause")
    return {"first": first, "again": os.environ.get("_X_AMZN_TRACE_ID")}
"""


def test_get_durable_execution_names_the_trace_its_invocations_were_handed(
    server: ServerProcess,
) -> None:
    lam = client(server)
    deploy(lam, "traced-durable", {"handler.py": TRACED_DURABLE})
    resp = lam.invoke(FunctionName="traced-durable", Payload=b"{}", DurableExecutionName="tr-1")
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    seen = json.loads(resp["Payload"].read())
    described = lam.get_durable_execution(DurableExecutionArn=arn)
    root = described["TraceHeader"]["XAmznTraceId"]
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", root), root
    # The wait ends the first invocation: the second, a replay, carries the same root.
    assert TRACE_HEADER.fullmatch(seen["first"]) and TRACE_HEADER.fullmatch(seen["again"])
    assert seen["first"].split(";")[0] == seen["again"].split(";")[0] == root
    assert seen["first"] != seen["again"]  # each invocation its own parent
    other = lam.invoke(FunctionName="traced-durable", Payload=b"{}", DurableExecutionName="tr-2")
    other_arn = other["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    other_root = lam.get_durable_execution(DurableExecutionArn=other_arn)["TraceHeader"]
    assert other_root["XAmznTraceId"] != root
