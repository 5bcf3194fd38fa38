"""The /v1 OpenAPI document, checked against a live `treadle dev` with schemathesis.

Every operation gets generated requests (valid and invalid); each answer must be no
5xx, a documented status, a documented content type, and match its response schema;
an invalid request must be refused.
Generated names find no function or execution, so the executions' answers that need
real ones (delivered, buffered, 409 ended, batch and redrive results) are checked on
requests made with real ones.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.server import ServerProcess, basic, client, deploy, http, v1
from support.workflows import EVENTED
from treadle.api.openapi import build_document
from treadle.app.notifications import MAX_WAIT_S
from treadle_workflows import EVENT_NAME_PREFIX

schema = schemathesis.openapi.from_dict(build_document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    # A request the document calls invalid gets a 4xx, not a 200 on a guessed meaning.
    negative_data_rejection,
]


def test_the_server_serves_the_document(server: ServerProcess) -> None:
    status, headers, body = http(server, "GET", "/v1/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert b'"openapi":"3.1.0"' in body and b"/v1/repos/{Repo}/commits" in body


@schema.parametrize()
@hypothesis.settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_v1_answers_match_the_document(case: Any, server: ServerProcess) -> None:
    admin = case.path.startswith("/v1/tenants")
    creds = server.credentials("treadle-admin" if admin else "treadle")
    wait = (case.query or {}).get("waitSeconds")
    if isinstance(wait, int) and not isinstance(wait, bool) and 1 < wait <= MAX_WAIT_S:
        # A valid long poll answers after `wait` seconds when nothing happens: 1 s shows
        # the same answer, where every generated 10-20 s cost the suite its time.
        case.query["waitSeconds"] = 1
    # Above the longest valid long poll: a poll answered at its end is not a timeout.
    timeout = MAX_WAIT_S + 10
    case.call_and_validate(
        base_url=server.url, headers=basic(creds), checks=CHECKS, timeout=timeout
    )


@pytest.mark.parametrize("path", ["/v1/repos", "/v1/tenants"])
def test_v1_without_credentials_is_refused_with_the_documented_error(
    server: ServerProcess, path: str
) -> None:
    status, headers, body = http(server, "GET", path)
    assert status == 403 and headers["content-type"] == "application/json"
    assert b'"MissingAuthenticationTokenException"' in body


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        # An empty limit is not "no limit": the three listings agree.
        ("GET", "/v1/tenants?limit=", None, "limit must be an integer from 1 to 1000, not ''"),
        ("GET", "/v1/repos?limit=0", None, "limit must be an integer from 1 to 1000, not '0'"),
        ("GET", "/v1/functions/f/versions?limit=x", None, "not 'x'"),
        # JSON false is not a quota of 0, nor "1" a quota of 1 (pydantic's lax mode).
        ("PATCH", "/v1/tenants/{account}", {"quotas": {"maxFacetBytes": False}}, "integer"),
        ("PATCH", "/v1/tenants/{account}", {"quotas": {"maxFunctions": "1"}}, "integer"),
        ("PATCH", "/v1/tenants/{account}", {"disabled": "yes"}, "boolean"),
    ],
)
def test_v1_refuses_what_the_document_calls_invalid_with_a_precise_message(
    server: ServerProcess, method: str, path: str, body: Any, message: str
) -> None:
    admin_key = server.credentials("treadle-admin")
    _, listed = v1(server, "GET", "/v1/tenants", credentials=admin_key)
    (account,) = [t["accountId"] for t in listed["tenants"] if t["name"] == "default"]
    admin = path.startswith("/v1/tenants")
    status, answer = v1(
        server,
        method,
        path.format(account=account),
        body,
        credentials=admin_key if admin else server.credentials(),
    )
    assert status == 400, answer
    assert message in answer["error"]["message"]
    _, tenant = v1(server, "GET", f"/v1/tenants/{account}", credentials=admin_key)
    assert tenant["quotas"]["maxFacetBytes"] > 0 and tenant["disabled"] is False


def call(server: ServerProcess, path: str, params: dict[str, str], body: Any) -> Any:
    """A request of the document's operation `POST path`, its answer checked like above."""
    # Given values are sent as they are: an ARN must be encoded into one segment here.
    encoded = {k: urllib.parse.quote(v, safe="") for k, v in params.items()}
    case = schema[path]["POST"].Case(
        path_parameters=encoded, body=body, media_type="application/json"
    )
    response = case.call_and_validate(
        base_url=server.url, headers=basic(server.credentials()), checks=CHECKS
    )
    return response.status_code, response.json()


def wait_status(lam: Any, arn: str, *statuses: str) -> None:
    deadline = time.monotonic() + 60
    while lam.get_durable_execution(DurableExecutionArn=arn)["Status"] not in statuses:
        assert time.monotonic() < deadline, f"{arn} never reached {statuses}"
        time.sleep(0.05)


def test_the_execution_routes_real_answers_match_the_document(server: ServerProcess) -> None:
    lam = client(server)
    deploy(lam, "documented", {"handler.py": EVENTED})
    by_name = "/v1/functions/{Name}/executions/{ExecutionName}/events"
    status, started = call(
        server,
        "/v1/functions/{Name}/executions:batch",
        {"Name": "documented"},
        {"executions": [{"name": "gate", "input": {"mode": "gate"}}, {"name": "gate"}]},
    )
    assert status == 200
    first, clash = started["results"]
    assert first["created"] is True and clash["error"]["status"] == 409
    arn = first["executionArn"]
    event = {"type": "approval", "payload": {"ok": True}}
    status, sent = call(server, "/v1/executions/{Arn}/events", {"Arn": arn}, event)
    assert (status, sent.get("outcome")) == (200, "buffered"), sent
    wait_status(lam, arn, "RUNNING")
    params = {"Name": "documented", "ExecutionName": "gate"}
    assert call(server, by_name, params, {"type": "go"})[0] == 200
    wait_status(lam, arn, "SUCCEEDED")
    status, ended = call(server, by_name, params, {"type": "go"})
    assert (status, ended["error"]["code"]) == (409, "ResourceConflictException")
    # A succeeded execution is not redriven: the batch form finds no failed one.
    status, redriven = call(
        server, "/v1/functions/{Name}/executions:redrive", {"Name": "documented"}, {}
    )
    assert (status, redriven) == (200, {"results": []})
    redrive = "/v1/executions/{Arn}/redrive"
    status, refused = call(server, redrive, {"Arn": arn}, {})
    assert (status, refused["error"]["code"]) == (400, "InvalidParameterValueException")
    again = {"fromStep": {"name": EVENT_NAME_PREFIX + "approval"}, "name": "gate-again"}
    status, out = call(server, redrive, {"Arn": arn}, again)
    assert (status, out["redrivenFrom"], out["seededOperations"]) == (200, arn, 1)
