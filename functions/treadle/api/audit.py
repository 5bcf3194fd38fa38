"""The API layer's part of the audit log: which calls are audited, and who made them.

`Auditor.around` wraps every request of the three surfaces. A call whose route is in
`ACTIONS` runs inside an `AuditScope` (domain/audit.py) holding the verified caller
(the request's access key id and principal kind), the tenant, the source address and
the action. The use case hands the scope's record to the store that writes the change,
which commits both together. When the call is refused (any error answer: bad input,
403, 404, a quota), nothing changed, so the record of the refusal (outcome = the error
code) is appended on its own here.

A call that succeeded without a store taking its record is an action whose stores do
not take one yet (`docs/operating.md` lists them): its record is appended just after
the change, which a crash between the two can lose. That is logged, so the gap shows.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Final
from urllib.parse import unquote

from treadle.api.http import Request, Response
from treadle.domain.audit import (
    SUCCEEDED,
    AuditLog,
    AuditScope,
    PrincipalKind,
    audit_scope,
    record_id,
)
from treadle.domain.ports import Clock, Ids

log = logging.getLogger(__name__)

_FN: Final = "/2015-03-31/functions"
_DX: Final = "/2025-12-01/durable-executions/{Arn}"
_T: Final = "/v1/tenants/{Account}"
# (method, route template) -> action: every mutating management call. Invoke,
# checkpoints, callbacks and events are the data plane (executions' own history
# records them), not audited here.
ACTIONS: Final[dict[tuple[str, str], str]] = {
    ("POST", _FN): "CreateFunction",
    ("DELETE", _FN + "/{Name}"): "DeleteFunction",
    ("PUT", _FN + "/{Name}/code"): "UpdateFunctionCode",
    ("PUT", _FN + "/{Name}/configuration"): "UpdateFunctionConfiguration",
    ("POST", _FN + "/{Name}/versions"): "PublishVersion",
    ("POST", _FN + "/{Name}/aliases"): "CreateAlias",
    ("PUT", _FN + "/{Name}/aliases/{Alias}"): "UpdateAlias",
    ("DELETE", _FN + "/{Name}/aliases/{Alias}"): "DeleteAlias",
    ("DELETE", _DX): "DeleteExecution",
    ("POST", _DX + "/stop"): "StopExecution",
    ("POST", _DX + "/pause"): "PauseExecution",
    ("POST", _DX + "/resume"): "ResumeExecution",
    ("POST", "/v1/tenants"): "CreateTenant",
    ("PATCH", _T): "UpdateTenant",
    ("POST", _T + "/keys"): "CreateKey",
    ("PATCH", _T + "/keys/{KeyId}"): "UpdateKey",
    ("POST", _T + "/keys/{KeyId}/rotate"): "RotateKey",
    ("POST", _T + "/gc"): "CollectGarbage",  # its removals are recorded one by one
    ("POST", "/v1/functions/{Name}/deploy"): "Deploy",
    ("POST", "/v1/repos"): "CreateRepository",
    ("DELETE", "/v1/repos/{Repo}"): "DeleteRepository",
    ("POST", "/v1/repos/{Repo}/commits"): "CommitFiles",
    ("POST", "/v1/repos/{Repo}/tokens"): "CreateRepositoryToken",
    ("DELETE", "/v1/repos/{Repo}/tokens/{TokenId}"): "RevokeRepositoryToken",
    ("DELETE", "/v1/facets/{Facet}"): "DeleteFacet",
    ("POST", "/v1/executions/{Arn}/redrive"): "Redrive",
    ("POST", "/v1/functions/{Name}/executions:redrive"): "RedriveBatch",
    ("POST", "/v1/schedules"): "CreateSchedule",
    ("DELETE", "/v1/schedules/{Schedule}"): "DeleteSchedule",
    ("POST", "/v1/schedules/{Schedule}/pause"): "PauseSchedule",
    ("POST", "/v1/schedules/{Schedule}/resume"): "ResumeSchedule",
    ("POST", "/v1/schedules/{Schedule}/trigger"): "TriggerSchedule",
    ("POST", "/v1/webhooks"): "CreateWebhook",
    ("DELETE", "/v1/webhooks/{WebhookId}"): "DeleteWebhook",
    ("POST", "/git/{Tenant}/{Repo}/git-receive-pack"): "Push",
}


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?$")


_PATTERNS: Final = [
    (method, _compile(template), action) for (method, template), action in ACTIONS.items()
]


def action_of(request: Request) -> tuple[str, dict[str, str]] | None:
    """The audited action of a request and its path parameters; None if not audited."""
    for method, pattern, action in _PATTERNS:
        if method == request.method and (m := pattern.match(request.path)):
            return action, {k: unquote(v) for k, v in m.groupdict().items()}
    return None


def outcome_of(response: Response) -> str:
    """`succeeded`, or the error code the answer carries (each surface has its shape)."""
    if response.status < 400:
        return SUCCEEDED
    code = response.headers.get("x-amzn-errortype")
    if code:
        return code.split(":", 1)[0]
    try:
        body = json.loads(response.body)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return str(body["error"]["code"])
    except (ValueError, KeyError):
        pass
    return f"HTTP{response.status}"  # Git's plain-text refusals


class Auditor:
    def __init__(self, log_: AuditLog, clock: Clock, ids: Ids) -> None:
        self.log = log_
        self._clock = clock
        self._ids = ids

    def around(self, request: Request, handle: Callable[[], Response]) -> Response:
        found = action_of(request)
        if found is None:
            return handle()
        action, params = found
        now = self._clock.now_ms()
        scope = AuditScope(
            id=record_id(now, self._ids.request_id().replace("-", "")[:16]),
            time_ms=now,
            access_key_id="",
            principal=PrincipalKind.ANONYMOUS,
            tenant="",
            action=action,
            resource=unquote(request.path),
            source_address=request.source_address,
        )

        def identify(scope: AuditScope) -> None:
            # Who was verified during the call (nobody, if authentication failed).
            scope.access_key_id = request.access_key_id or _claimed_key(request)
            if request.principal_kind:
                scope.principal = PrincipalKind(request.principal_kind)
            scope.tenant = request.tenant or params.get("Account") or params.get("Tenant", "")

        scope.identify = identify
        with audit_scope(scope):
            response = handle()
        if not scope.joined:
            identify(scope)
        outcome = outcome_of(response)
        if outcome == SUCCEEDED and scope.joined:
            return response  # written by the store, with the change
        if outcome == SUCCEEDED:
            log.info("audit: %s has no transactional record yet; appended after", action)
        try:
            self.log.append(scope.record(outcome))
        except Exception:
            log.exception("audit: could not append the record of %s (%s)", action, outcome)
        return response


def _claimed_key(request: Request) -> str:
    """The key id a refused request claimed (not verified: it says who was tried)."""
    auth = request.header("authorization") or ""
    m = re.search(r"Credential=([A-Za-z0-9]{1,128})/", auth)
    return m.group(1) if m else ""
