"""FilterLogEvents, DescribeLogGroups and DescribeLogStreams refusals: CloudWatch Logs'
codes, from the API's one error mapping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.api.http import Request, Response
from treadle.api.logs_routes import LogsApi

TENANT = "123456789012"
GROUP = "/aws/lambda/fn"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LogsApi]:
    store = SqliteLogStore(tmp_path / "logs.db")
    store.append(TENANT, GROUP, "2025/01/01/[$LATEST]a", [(1_000, "hello")])
    yield LogsApi(store)


def _call(api: LogsApi, body: bytes, operation: str = "FilterLogEvents") -> Response:
    request = Request.build("POST", "/", "", {"x-amz-target": f"Logs_20140328.{operation}"}, body)
    request.tenant = TENANT
    return api.handle(request)


def _refusal(response: Response) -> tuple[int, str]:
    body = json.loads(response.body)
    assert response.headers["x-amzn-errortype"] == body["__type"]
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert body["message"]
    return response.status, body["__type"]


def test_a_good_request_answers_events(api: LogsApi) -> None:
    response = _call(api, json.dumps({"logGroupName": GROUP}).encode())
    assert response.status == 200
    assert [e["message"] for e in json.loads(response.body)["events"]] == ["hello"]


@pytest.mark.parametrize(
    ("body", "operation", "expected"),
    [
        (b"{}", "PutRetentionPolicy", (400, "UnknownOperationException")),
        (b'{"limit": 51}', "DescribeLogGroups", (400, "InvalidParameterException")),
        (b'{"logGroupNamePrefix": 7}', "DescribeLogGroups", (400, "InvalidParameterException")),
        (
            b'{"logGroupName": "/aws/lambda/none"}',
            "DescribeLogStreams",
            (400, "ResourceNotFoundException"),
        ),
        (
            json.dumps({"logGroupName": GROUP, "orderBy": "Size"}).encode(),
            "DescribeLogStreams",
            (400, "InvalidParameterException"),
        ),
        (
            json.dumps(
                {"logGroupName": GROUP, "orderBy": "LastEventTime", "logStreamNamePrefix": "2025"}
            ).encode(),
            "DescribeLogStreams",
            (400, "InvalidParameterException"),
        ),
        (b"{not json", "FilterLogEvents", (400, "SerializationException")),
        (b"[1]", "FilterLogEvents", (400, "SerializationException")),
        (b"{}", "FilterLogEvents", (400, "InvalidParameterException")),
        (
            b'{"logGroupName": "/aws/lambda/none"}',
            "FilterLogEvents",
            (400, "ResourceNotFoundException"),
        ),
        (
            json.dumps({"logGroupName": GROUP, "filterPattern": "{ $.a = "}).encode(),
            "FilterLogEvents",
            (400, "InvalidParameterException"),
        ),
        (
            json.dumps({"logGroupName": GROUP, "limit": 0.5}).encode(),
            "FilterLogEvents",
            (400, "InvalidParameterException"),
        ),
        (
            json.dumps({"logGroupName": GROUP, "limit": "many"}).encode(),
            "FilterLogEvents",
            (400, "InvalidParameterException"),
        ),
        (
            json.dumps({"logGroupName": GROUP, "nextToken": "not-a-token"}).encode(),
            "FilterLogEvents",
            (400, "InvalidParameterException"),
        ),
    ],
)
def test_refusals_carry_cloudwatch_logs_codes(
    api: LogsApi, body: bytes, operation: str, expected: tuple[int, str]
) -> None:
    assert _refusal(_call(api, body, operation)) == expected
