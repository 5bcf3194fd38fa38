"""The /v1 OpenAPI document, checked against a live `treadle dev` with schemathesis.

Every operation gets generated requests (valid and invalid); each answer must be no
5xx, a documented status, a documented content type, and match its response schema.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from support.server import ServerProcess, basic, http
from treadle.api.openapi import build_document

schema = schemathesis.openapi.from_dict(build_document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
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
    case.call_and_validate(base_url=server.url, headers=basic(creds), checks=CHECKS)


@pytest.mark.parametrize("path", ["/v1/repos", "/v1/tenants"])
def test_v1_without_credentials_is_refused_with_the_documented_error(
    server: ServerProcess, path: str
) -> None:
    status, headers, body = http(server, "GET", path)
    assert status == 403 and headers["content-type"] == "application/json"
    assert b'"MissingAuthenticationTokenException"' in body
