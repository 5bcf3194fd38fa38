"""CloudWatch-Logs-compatible FilterLogEvents (awsJson1.1), for function logs."""

from __future__ import annotations

from typing import Any

from treadle.api.http import Request, Response
from treadle.domain.logfilter import LogFilterPatternError
from treadle.domain.logs import MAX_FILTER_LIMIT, LogStore


def _error(code: str, message: str, status: int = 400) -> Response:
    return Response.json(
        {"__type": code, "message": message},
        status=status,
        headers={"x-amzn-errortype": code, "content-type": "application/x-amz-json-1.1"},
    )


class LogsApi:
    def __init__(self, logs: LogStore) -> None:
        self.logs = logs

    def handle(self, req: Request) -> Response:
        target = req.header("x-amz-target") or ""
        operation = target.split(".", 1)[-1]
        if operation != "FilterLogEvents":
            return _error("UnknownOperationException", f"{operation} is not supported.")
        try:
            body: dict[str, Any] = req.json()
        except Exception:
            return _error("SerializationException", "Could not parse request body into json.")
        group = body.get("logGroupName") or ""
        if not isinstance(group, str) or not group:
            return _error("InvalidParameterException", "logGroupName is required.")
        if not self.logs.log_group_exists(req.tenant, group):
            return _error("ResourceNotFoundException", "The specified log group does not exist.")
        limit = body.get("limit") or MAX_FILTER_LIMIT
        try:
            result = self.logs.filter(
                req.tenant,
                group,
                start_ms=body.get("startTime"),
                end_ms=body.get("endTime"),
                pattern=body.get("filterPattern"),
                stream_names=body.get("logStreamNames"),
                stream_prefix=body.get("logStreamNamePrefix"),
                limit=int(limit),
                next_token=body.get("nextToken"),
            )
        except (LogFilterPatternError, ValueError) as exc:
            return _error("InvalidParameterException", str(exc))
        out: dict[str, Any] = {"events": result.events, "searchedLogStreams": []}
        if result.next_token:
            out["nextToken"] = result.next_token
        return Response.json(out, headers={"content-type": "application/x-amz-json-1.1"})
