"""The API layer's auditor: which requests it audits, the record a store is handed, and
the record it appends itself (a refusal; a success no store took)."""

from __future__ import annotations

import json

from support.fakes import ManualClock
from treadle.adapters.local.basics import RandomIds
from treadle.api.audit import Auditor, action_of, outcome_of
from treadle.api.errors import aws_error, v1_json_error
from treadle.api.http import Request, Response
from treadle.domain.audit import (
    AuditPage,
    AuditQuery,
    AuditRecord,
    PrincipalKind,
    current_scope,
    pending_record,
)

T = "123456789012"


class MemoryLog:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> None:
        self.records.append(record)

    def query(self, query: AuditQuery) -> AuditPage:
        return AuditPage(records=[r for r in reversed(self.records) if query.matches(r)])

    def purge(self, before_ms: int) -> int:
        return 0


def _request(method: str, path: str) -> Request:
    request = Request.build(method, path, "", {}, b"")
    request.source_address = "192.0.2.1"
    return request


def _signed_in(request: Request) -> None:
    """What the authenticator notes on a request it verified."""
    request.tenant = T
    request.access_key_id = "AKIATENANT"
    request.principal_kind = PrincipalKind.TENANT_KEY


def test_only_mutating_management_calls_are_audited() -> None:
    assert action_of(_request("POST", "/2015-03-31/functions")) == ("CreateFunction", {})
    assert action_of(_request("DELETE", "/v1/facets/f1")) == ("DeleteFacet", {"Facet": "f1"})
    found = action_of(_request("POST", f"/git/{T}/app.git/git-receive-pack"))
    assert found == ("Push", {"Tenant": T, "Repo": "app.git"})
    for method, path in (
        ("GET", "/2015-03-31/functions"),
        ("POST", "/2015-03-31/functions/f/invocations"),
        ("GET", "/v1/audit"),
        ("POST", f"/git/{T}/app.git/git-upload-pack"),
    ):
        assert action_of(_request(method, path)) is None, (method, path)


def test_a_success_whose_store_took_the_record_is_not_appended_again() -> None:
    log = MemoryLog()
    auditor = Auditor(log, ManualClock(), RandomIds())
    request = _request("DELETE", "/2015-03-31/functions/pay")
    taken: list[AuditRecord | None] = []

    def handle() -> Response:
        _signed_in(request)
        taken.append(pending_record(resource="arn:fn:pay"))
        taken.append(pending_record())  # one call, one record
        return Response(status=204)

    auditor.around(request, handle)
    assert log.records == []
    record = taken[0]
    assert record is not None and taken[1] is None
    assert (record.action, record.resource, record.tenant) == ("DeleteFunction", "arn:fn:pay", T)
    assert (record.access_key_id, record.principal) == ("AKIATENANT", PrincipalKind.TENANT_KEY)
    assert (record.outcome, record.source_address) == ("succeeded", "192.0.2.1")
    assert current_scope() is None  # the scope ends with the request


def test_a_refusal_is_appended_with_its_code_even_after_a_store_took_the_record() -> None:
    log = MemoryLog()
    auditor = Auditor(log, ManualClock(), RandomIds())
    request = _request("POST", "/2015-03-31/functions")

    def handle() -> Response:
        _signed_in(request)
        pending_record(resource="arn:fn:pay")  # then the store refused: rolled back
        return aws_error(409, "ResourceConflictException", "exists")

    auditor.around(request, handle)
    [record] = log.records
    assert (record.outcome, record.resource) == ("ResourceConflictException", "arn:fn:pay")


def test_an_unauthenticated_refusal_names_the_key_it_claimed() -> None:
    log = MemoryLog()
    auditor = Auditor(log, ManualClock(), RandomIds())
    request = _request("PATCH", f"/v1/tenants/{T}")
    request.headers["authorization"] = (
        "AWS4-HMAC-SHA256 Credential=AKIAWHOEVER/20260101/us-east-1/lambda/aws4_request, x"
    )
    auditor.around(request, lambda: v1_json_error(403, "AccessDeniedException", "no"))
    [record] = log.records
    assert (record.access_key_id, record.principal) == ("AKIAWHOEVER", PrincipalKind.ANONYMOUS)
    assert (record.tenant, record.action) == (T, "UpdateTenant")


def test_a_success_no_store_took_is_appended_after_it() -> None:
    log = MemoryLog()
    auditor = Auditor(log, ManualClock(), RandomIds())
    request = _request("DELETE", "/v1/facets/f1")

    def handle() -> Response:
        _signed_in(request)
        return Response(status=204)

    auditor.around(request, handle)
    [record] = log.records
    assert (record.action, record.outcome, record.resource) == (
        "DeleteFacet",
        "succeeded",
        "/v1/facets/f1",
    )


def test_outcomes_are_read_from_each_surfaces_error_shape() -> None:
    assert outcome_of(Response(status=200)) == "succeeded"
    assert outcome_of(aws_error(404, "ResourceNotFoundException", "x")) == (
        "ResourceNotFoundException"
    )
    assert outcome_of(v1_json_error(402, "QuotaExceeded", "x")) == "QuotaExceeded"
    body = json.dumps({"message": "x"}).encode()
    assert outcome_of(Response(status=401, body=body)) == "HTTP401"
