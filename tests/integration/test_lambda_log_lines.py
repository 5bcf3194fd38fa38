"""Every invocation writes Lambda's START, END and REPORT lines, so every invoked function
has its log group (the README's `aws logs filter-log-events` works on a silent one)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from support.server import ServerProcess, client, deploy, new_tenant

SILENT = "def handler(event, context):\n    return 'ok'\n"
CHATTY = "def handler(event, context):\n    print('hello from', context.function_name)\n"

REPORT = re.compile(
    r"REPORT RequestId: (?P<id>[0-9a-f-]{36})\tDuration: (?P<d>\d+\.\d\d) ms\t"
    r"Billed Duration: (?P<billed>\d+) ms\tMemory Size: 256 MB\tMax Memory Used: (?P<used>\d+) MB"
    r"(\tInit Duration: (?P<init>\d+\.\d\d) ms)?"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("loglines") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _messages(server: ServerProcess, function: str) -> list[str]:
    events = client(server, "logs").filter_log_events(logGroupName=f"/aws/lambda/{function}")
    return [e["message"] for e in events["events"]]


def test_a_silent_function_has_its_group_with_start_end_and_report(server: ServerProcess) -> None:
    lam = client(server)
    deploy(lam, "silent", {"handler.py": SILENT}, durable=False)
    ids = [lam.invoke(FunctionName="silent")["ResponseMetadata"]["RequestId"] for _ in range(2)]
    lines = _messages(server, "silent")
    assert len(lines) == 6, lines
    reports = []
    for n, request_id in enumerate(ids):
        start, end, report = lines[3 * n : 3 * n + 3]
        assert start == f"START RequestId: {request_id} Version: $LATEST"
        assert end == f"END RequestId: {request_id}"
        found = REPORT.fullmatch(report)
        assert found is not None, report
        assert found["id"] == request_id
        assert int(found["billed"]) >= float(found["d"]) and int(found["used"]) > 0
        reports.append(found)
    # A cold start reports its Init phase; the warm one after it does not.
    assert reports[0]["init"] is not None and reports[1]["init"] is None


def test_the_handlers_lines_sit_between_start_and_end(server: ServerProcess) -> None:
    lam = client(server)
    deploy(lam, "chatty", {"handler.py": CHATTY}, durable=False)
    lam.invoke(FunctionName="chatty")
    lines = _messages(server, "chatty")
    assert lines[0].startswith("START ") and lines[-2].startswith("END ")
    assert "hello from chatty" in lines[1]
    assert lines[-1].startswith("REPORT ")


def test_every_response_names_its_request(server: ServerProcess) -> None:
    from botocore.exceptions import ClientError

    lam = client(server)
    ids = {lam.list_functions()["ResponseMetadata"]["RequestId"] for _ in range(2)}
    assert len(ids) == 2 and all(len(i) == 36 for i in ids)
    with pytest.raises(ClientError) as refused:
        lam.get_function(FunctionName="nothing-here")
    assert len(refused.value.response["ResponseMetadata"]["RequestId"]) == 36


def test_groups_and_streams_are_described_as_cloudwatch_does(server: ServerProcess) -> None:
    lam, logs = client(server), client(server, "logs")
    deploy(lam, "described", {"handler.py": SILENT}, durable=False)
    request_ids = [lam.invoke(FunctionName="described")["ResponseMetadata"]["RequestId"]]
    request_ids.append(lam.invoke(FunctionName="described")["ResponseMetadata"]["RequestId"])
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/desc")["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["/aws/lambda/described"]
    streams = logs.describe_log_streams(
        logGroupName="/aws/lambda/described", orderBy="LastEventTime", descending=True
    )["logStreams"]
    # One stream per invocation, named as Lambda names it, the newest first.
    assert len(streams) == 2
    assert streams[0]["logStreamName"].endswith("[$LATEST]" + request_ids[1].replace("-", ""))
    assert streams[0]["lastEventTimestamp"] >= streams[1]["lastEventTimestamp"]
    missing = logs.exceptions.ResourceNotFoundException
    with pytest.raises(missing):
        logs.describe_log_streams(logGroupName="/aws/lambda/never-invoked")
    _, their_keys = new_tenant(server, "log-reader")
    other = client(server, "logs", credentials=their_keys)
    assert other.describe_log_groups(logGroupNamePrefix="/aws/lambda/desc")["logGroups"] == []
