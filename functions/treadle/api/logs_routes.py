"""CloudWatch-Logs-compatible FilterLogEvents (awsJson1.1), for function logs."""

from __future__ import annotations

from typing import Any

from treadle.api.errors import UnknownOperation, Unserializable, logs_error
from treadle.api.http import Request, Response
from treadle.domain.errors import InvalidParameter, NotFound
from treadle.domain.logs import MAX_FILTER_LIMIT, LogStore

# The CloudWatch Logs operations served (the README's table lists them).
SUPPORTED = frozenset({"FilterLogEvents"})


class LogsApi:
    def __init__(self, logs: LogStore) -> None:
        self.logs = logs

    def handle(self, req: Request) -> Response:
        # Errors take CloudWatch Logs' shape here, not the Lambda one the app would give.
        try:
            return self._handle(req)
        except Exception as exc:
            return logs_error(exc)

    def _handle(self, req: Request) -> Response:
        target = req.header("x-amz-target") or ""
        operation = target.split(".", 1)[-1]
        if operation not in SUPPORTED:
            raise UnknownOperation(f"{operation} is not supported.")
        body = _body(req)
        group = body.get("logGroupName") or ""
        if not isinstance(group, str) or not group:
            raise InvalidParameter("logGroupName is required.")
        if not self.logs.log_group_exists(req.tenant, group):
            raise NotFound("The specified log group does not exist.")
        result = self.logs.filter(
            req.tenant,
            group,
            start_ms=body.get("startTime"),
            end_ms=body.get("endTime"),
            pattern=body.get("filterPattern"),
            stream_names=body.get("logStreamNames"),
            stream_prefix=body.get("logStreamNamePrefix"),
            limit=_limit(body.get("limit")),
            next_token=body.get("nextToken"),
        )
        out: dict[str, Any] = {"events": result.events, "searchedLogStreams": []}
        if result.next_token:
            out["nextToken"] = result.next_token
        return Response.json(out, headers={"content-type": "application/x-amz-json-1.1"})


def _body(req: Request) -> dict[str, Any]:
    try:
        body = req.json()
    except InvalidParameter:
        body = None
    if not isinstance(body, dict):
        raise Unserializable("Could not parse request body into json.")
    return body


def _limit(raw: Any) -> int:
    if not raw:
        return MAX_FILTER_LIMIT
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidParameter(f"limit must be an integer, not {raw!r}.") from None
