"""CloudWatch Logs adapter of the LogStore port: tenant function logs where Lambda puts them.

Names. A tenant sees its function's logs as `/aws/lambda/<function>`, as on Lambda; the
group really read (or written) is the one Lambda writes for the tenant function,
`/aws/lambda/treadle-<stage>-<tenant>-<function>` (`lambda_calls.physical_name`, fitted to
64 characters). The tenant part comes from the authenticated caller, never from the
requested name, and stage and tenant hold no hyphen, so no requested name reaches
another tenant's group; a name that is not `/aws/lambda/<function name>` names no group.

Reads use FilterLogEvents and DescribeLogStreams, granted on tenant groups only, and
DescribeLogGroups, which IAM cannot narrow below every group of the account and region
(infra/iam.py `LOG_READ_ACTIONS`): this adapter asks it only for the prefix of the
caller's own groups. A function name too long for Lambda's 64 characters lists as the
head and hash its physical name keeps (`lambda_calls.physical_name`).

Writes happen only where tenant code runs in the local sandbox (emulated mode, or
`function_runtime="sandbox"`): the sandbox appends each invocation's lines, creating the
group and stream on first use as Lambda does. On AWS, Lambda writes them itself.

Paging. `nextToken` is this adapter's own: the service's token of a page plus how many
of that page's events were already returned, so a page can be cut at `limit` events
whatever the service's page size, and events can be filtered here (see `filter_locally`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from treadle.adapters.aws.errors import error_code, translated
from treadle.adapters.aws.lambda_calls import NAME_PREFIX, STAGE_RE, physical_name
from treadle.domain.errors import InvalidParameter
from treadle.domain.logfilter import compile_pattern
from treadle.domain.logs import (
    MAX_FILTER_LIMIT,
    DescribePage,
    FilterResult,
    check_describe_limit,
    check_filter_limit,
)

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import FilterLogEventsRequestTypeDef, InputLogEventTypeDef

log = logging.getLogger(__name__)

GROUP_PREFIX: Final = "/aws/lambda/"
# Lambda's function names (a bare name: no ARN, no qualifier).
_FUNCTION_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# PutLogEvents limits: events per call, bytes per call (each event counts 26 bytes more
# than its message), bytes per event, and the time one call may span.
_MAX_BATCH_EVENTS: Final = 10_000
_MAX_BATCH_BYTES: Final = 1_048_576
_EVENT_OVERHEAD: Final = 26
_MAX_EVENT_BYTES: Final = 256 * 1024 - _EVENT_OVERHEAD
_MAX_BATCH_SPAN_MS: Final = 24 * 3600 * 1000
# Service calls one filter may make: CloudWatch may answer short or empty pages with a
# token, and a request behind API Gateway has 29 s; a short page with a token is fine.
_MAX_CALLS: Final = 20
_EVENT_KEYS: Final[tuple[str, ...]] = (
    "logStreamName",
    "timestamp",
    "message",
    "ingestionTime",
    "eventId",
)
# OperationAborted: another call is creating the same resource right now.
_CREATED_MEANWHILE: Final = frozenset(
    {"ResourceAlreadyExistsException", "OperationAbortedException"}
)


def _translated(action: str) -> AbstractContextManager[None]:
    return translated(action, "CloudWatch Logs")


def _batches(events: Sequence[tuple[int, str]]) -> Iterator[list[InputLogEventTypeDef]]:
    """PutLogEvents batches: in time order, within the call's limits, no empty message."""
    batch: list[InputLogEventTypeDef] = []
    size = 0
    for ts, message in sorted(events, key=lambda e: e[0]):
        raw = message.encode()
        if not raw:
            continue  # CloudWatch refuses an empty message; it carries nothing anyway
        if len(raw) > _MAX_EVENT_BYTES:
            # As Lambda does with an over-long line: keep its head.
            message = raw[:_MAX_EVENT_BYTES].decode(errors="ignore")
            raw = message.encode()
        cost = len(raw) + _EVENT_OVERHEAD
        if batch and (
            len(batch) == _MAX_BATCH_EVENTS
            or size + cost > _MAX_BATCH_BYTES
            or ts - batch[0]["timestamp"] >= _MAX_BATCH_SPAN_MS
        ):
            yield batch
            batch, size = [], 0
        batch.append({"timestamp": ts, "message": message})
        size += cost
    if batch:
        yield batch


def _encode_token(service_token: str | None, skip: int) -> str:
    raw = json.dumps({"t": service_token, "s": skip}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_token(token: str | None) -> tuple[str | None, int]:
    if not token:
        return None, 0
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
        service_token, skip = value["t"], value["s"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidParameter("Invalid nextToken.") from None
    if not (service_token is None or isinstance(service_token, str)) or not (
        isinstance(skip, int) and skip >= 0
    ):
        raise InvalidParameter("Invalid nextToken.")
    return service_token, skip


class CloudWatchLogStore:
    def __init__(
        self, client: CloudWatchLogsClient, *, stage: str, filter_locally: bool = False
    ) -> None:
        """`filter_locally`: evaluate filter patterns here instead of in the service.

        For emulators: moto matches only plain terms and returns every event for other
        patterns. CloudWatch itself implements the whole syntax, of which
        `treadle.domain.logfilter` is a subset, so on AWS the service decides.
        """
        if not STAGE_RE.fullmatch(stage):  # refused now rather than at the first read
            raise ValueError(f"invalid stage {stage!r}")
        self._client = client
        self._stage = stage
        self._filter_locally = filter_locally

    def group_name(self, tenant: str, log_group: str) -> str | None:
        """The tenant's real group behind `log_group`; None if it names no function's."""
        function = log_group.removeprefix(GROUP_PREFIX)
        if function == log_group or not _FUNCTION_RE.fullmatch(function):
            return None
        return GROUP_PREFIX + physical_name(self._stage, tenant, function)

    # -- writes (sandbox) ----------------------------------------------------------------

    def append(
        self, tenant: str, log_group: str, log_stream: str, events: Sequence[tuple[int, str]]
    ) -> None:
        group = self.group_name(tenant, log_group)
        if group is None:
            raise InvalidParameter(f"{log_group} is not the log group of a function.")
        for batch in _batches(events):
            self._put(group, log_stream, batch)

    def _put(self, group: str, stream: str, batch: list[InputLogEventTypeDef]) -> None:
        action = f"write logs to {group}"
        with _translated(action):
            try:
                response = self._client.put_log_events(
                    logGroupName=group, logStreamName=stream, logEvents=batch
                )
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                self._create(group, stream)
                response = self._client.put_log_events(
                    logGroupName=group, logStreamName=stream, logEvents=batch
                )
        rejected = response.get("rejectedLogEventsInfo")
        if rejected:  # too old or too far ahead: nothing a retry would change
            log.warning("%s: CloudWatch rejected some events: %s", action, rejected)

    def _create(self, group: str, stream: str) -> None:
        """Create the group and the stream (either may exist: a concurrent invocation)."""
        try:
            self._client.create_log_group(logGroupName=group)
        except ClientError as exc:
            if error_code(exc) not in _CREATED_MEANWHILE:
                raise
        try:
            self._client.create_log_stream(logGroupName=group, logStreamName=stream)
        except ClientError as exc:
            if error_code(exc) not in _CREATED_MEANWHILE:
                raise
        log.debug("created log stream %s of %s", stream, group)

    # -- reads ---------------------------------------------------------------------------

    def log_group_exists(self, tenant: str, log_group: str) -> bool:
        group = self.group_name(tenant, log_group)
        if group is None:
            return False
        with _translated(f"read log group {log_group}"):
            try:
                self._client.describe_log_streams(logGroupName=group, limit=1)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return False
                raise
        return True

    def describe_groups(
        self, tenant: str, *, prefix: str | None, limit: int, next_token: str | None
    ) -> DescribePage:
        check_describe_limit(limit)
        own = f"{GROUP_PREFIX}{NAME_PREFIX}-{self._stage}-{tenant}-"
        wanted = prefix or ""
        if wanted.startswith(GROUP_PREFIX):
            service_prefix = own + wanted[len(GROUP_PREFIX) :]
        elif GROUP_PREFIX.startswith(wanted):
            service_prefix = own
        else:
            return DescribePage([], None)  # no group of a function starts so
        request: dict[str, Any] = {"logGroupNamePrefix": service_prefix, "limit": limit}
        if next_token:
            request["nextToken"] = next_token
        with _translated("list log groups"):
            response = self._client.describe_log_groups(**request)
        items = [
            {
                "logGroupName": GROUP_PREFIX + g["logGroupName"][len(own) :],
                "creationTime": g.get("creationTime", 0),
                "storedBytes": g.get("storedBytes", 0),
            }
            for g in response.get("logGroups", [])
            if g["logGroupName"].startswith(own)
        ]
        return DescribePage(items, response.get("nextToken") or None)

    def describe_streams(
        self,
        tenant: str,
        log_group: str,
        *,
        prefix: str | None,
        by_last_event: bool,
        descending: bool,
        limit: int,
        next_token: str | None,
    ) -> DescribePage:
        check_describe_limit(limit)
        group = self.group_name(tenant, log_group)
        if group is None:
            return DescribePage([], None)
        request: dict[str, Any] = {
            "logGroupName": group,
            "orderBy": "LastEventTime" if by_last_event else "LogStreamName",
            "descending": descending,
            "limit": limit,
        }
        if prefix:
            request["logStreamNamePrefix"] = prefix
        if next_token:
            request["nextToken"] = next_token
        with _translated(f"list log streams of {log_group}"):
            try:
                response = self._client.describe_log_streams(**request)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return DescribePage([], None)
                raise
        keys = (
            "logStreamName",
            "creationTime",
            "firstEventTimestamp",
            "lastEventTimestamp",
            "lastIngestionTime",
            "storedBytes",
        )
        items = [{k: s[k] for k in keys if k in s} for s in response.get("logStreams", [])]  # type: ignore[literal-required]
        return DescribePage(items, response.get("nextToken") or None)

    def filter(
        self,
        tenant: str,
        log_group: str,
        *,
        start_ms: int | None,
        end_ms: int | None,
        pattern: str | None,
        stream_names: Sequence[str] | None,
        stream_prefix: str | None,
        limit: int,
        next_token: str | None,
    ) -> FilterResult:
        check_filter_limit(limit)
        match = compile_pattern(pattern if self._filter_locally else None)
        service_token, skip = _decode_token(next_token)
        group = self.group_name(tenant, log_group)
        names = list(stream_names or [])
        if stream_prefix and names:
            # The service refuses both at once; the embedded store applies both.
            names = [n for n in names if n.startswith(stream_prefix)]
            if not names:
                return FilterResult(events=[], next_token=None)
        if group is None:
            return FilterResult(events=[], next_token=None)
        request: FilterLogEventsRequestTypeDef = {"logGroupName": group}
        if names:
            request["logStreamNames"] = names
        elif stream_prefix:
            request["logStreamNamePrefix"] = stream_prefix
        if start_ms is not None:
            request["startTime"] = start_ms
        if end_ms is not None:
            request["endTime"] = end_ms
        if pattern and not self._filter_locally:
            request["filterPattern"] = pattern

        def wanted(event: dict[str, Any]) -> bool:
            # Streams and times are checked here too: exact, and emulators differ.
            stream, ts = str(event.get("logStreamName", "")), int(event.get("timestamp", 0))
            return (
                (not names or stream in names)
                and (not stream_prefix or stream.startswith(stream_prefix))
                and (start_ms is None or ts >= start_ms)
                and (end_ms is None or ts <= end_ms)
                and match(str(event.get("message", "")))
            )

        out: list[dict[str, Any]] = []
        for _ in range(_MAX_CALLS):
            page, following = self._page(request, service_token, skip + limit - len(out))
            if skip >= len(page):
                skip -= len(page)
            else:
                for i in range(skip, len(page)):
                    event = {k: page[i][k] for k in _EVENT_KEYS if k in page[i]}
                    if not wanted(event):
                        continue
                    out.append(event)
                    if len(out) == limit:
                        if i + 1 < len(page):
                            return FilterResult(out, _encode_token(service_token, i + 1))
                        token = _encode_token(following, 0) if following else None
                        return FilterResult(out, token)
                skip = 0
            if not following:
                return FilterResult(out, None)
            service_token = following
        # Searched long enough for one request: the caller continues from here.
        return FilterResult(out, _encode_token(service_token, skip))

    def _page(
        self, request: FilterLogEventsRequestTypeDef, token: str | None, wanted: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        call: FilterLogEventsRequestTypeDef = {
            **request,
            # Remote filtering: the service returns only matches, so `wanted` suffices;
            # local: most may be dropped here, so take the most a call returns.
            "limit": MAX_FILTER_LIMIT
            if self._filter_locally
            else max(1, min(wanted, MAX_FILTER_LIMIT)),
            # Ignored (always on) by CloudWatch; emulators still sort by time only with it.
            "interleaved": True,
        }
        if token:
            call["nextToken"] = token
        with _translated(f"read logs of {request['logGroupName']}"):
            try:
                response = self._client.filter_log_events(**call)
            except ClientError as exc:
                code = error_code(exc)
                if code == "ResourceNotFoundException":
                    return [], None  # no group yet: no events
                if code == "InvalidParameterException":
                    # A pattern CloudWatch refuses, too many stream names, a stale token.
                    message = str(exc.response.get("Error", {}).get("Message", ""))
                    raise InvalidParameter(message or "Invalid parameter.") from exc
                raise
        events = [dict(e) for e in response.get("events", [])]
        return events, response.get("nextToken") or None
