"""CloudWatch-Logs-compatible FilterLogEvents, DescribeLogGroups and DescribeLogStreams
(awsJson1.1), for function logs."""

from __future__ import annotations

from typing import Any

from treadle.api.errors import UnknownOperation, Unserializable, logs_error
from treadle.api.http import Request, Response
from treadle.domain.errors import InvalidParameter, NotFound
from treadle.domain.logs import MAX_DESCRIBE_LIMIT, MAX_FILTER_LIMIT, DescribePage, LogStore

# The CloudWatch Logs operations served (the README's table lists them).
SUPPORTED = frozenset({"FilterLogEvents", "DescribeLogGroups", "DescribeLogStreams"})


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
        if operation == "DescribeLogGroups":
            return self._groups(req.tenant, body)
        group = body.get("logGroupName") or ""
        if not isinstance(group, str) or not group:
            raise InvalidParameter("logGroupName is required.")
        if not self.logs.log_group_exists(req.tenant, group):
            raise NotFound("The specified log group does not exist.")
        if operation == "DescribeLogStreams":
            return self._streams(req.tenant, group, body)
        result = self.logs.filter(
            req.tenant,
            group,
            start_ms=body.get("startTime"),
            end_ms=body.get("endTime"),
            pattern=body.get("filterPattern"),
            stream_names=body.get("logStreamNames"),
            stream_prefix=body.get("logStreamNamePrefix"),
            limit=_limit(body.get("limit"), MAX_FILTER_LIMIT),
            next_token=body.get("nextToken"),
        )
        out: dict[str, Any] = {"events": result.events, "searchedLogStreams": []}
        if result.next_token:
            out["nextToken"] = result.next_token
        return _answer(out)

    def _groups(self, tenant: str, body: dict[str, Any]) -> Response:
        page = self.logs.describe_groups(
            tenant,
            prefix=_text(body, "logGroupNamePrefix"),
            limit=_limit(body.get("limit"), MAX_DESCRIBE_LIMIT),
            next_token=_text(body, "nextToken"),
        )
        return _page("logGroups", page)

    def _streams(self, tenant: str, group: str, body: dict[str, Any]) -> Response:
        order = body.get("orderBy") or "LogStreamName"
        if order not in ("LogStreamName", "LastEventTime"):
            raise InvalidParameter("orderBy must be LogStreamName or LastEventTime.")
        prefix = _text(body, "logStreamNamePrefix")
        if prefix and order == "LastEventTime":
            # As CloudWatch Logs: the prefix applies to names, not to times.
            raise InvalidParameter("Cannot order by LastEventTime with a logStreamNamePrefix.")
        page = self.logs.describe_streams(
            tenant,
            group,
            prefix=prefix,
            by_last_event=order == "LastEventTime",
            descending=bool(body.get("descending", False)),
            limit=_limit(body.get("limit"), MAX_DESCRIBE_LIMIT),
            next_token=_text(body, "nextToken"),
        )
        return _page("logStreams", page)


def _answer(out: dict[str, Any]) -> Response:
    return Response.json(out, headers={"content-type": "application/x-amz-json-1.1"})


def _page(key: str, page: DescribePage) -> Response:
    out: dict[str, Any] = {key: page.items}
    if page.next_token:
        out["nextToken"] = page.next_token
    return _answer(out)


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"{key} must be a string.")
    return value


def _body(req: Request) -> dict[str, Any]:
    try:
        body = req.json()
    except InvalidParameter:
        body = None
    if not isinstance(body, dict):
        raise Unserializable("Could not parse request body into json.")
    return body


def _limit(raw: Any, default: int) -> int:
    if not raw:
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InvalidParameter(f"limit must be an integer, not {raw!r}.") from None
