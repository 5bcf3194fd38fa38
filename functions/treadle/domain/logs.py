"""The LogStore port: function logs, queried like CloudWatch Logs' FilterLogEvents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from treadle.domain.errors import InvalidParameter

# FilterLogEvents' largest page (its `limit`), whichever store answers it.
MAX_FILTER_LIMIT = 10_000
# DescribeLogGroups' and DescribeLogStreams' largest page.
MAX_DESCRIBE_LIMIT = 50


def check_filter_limit(limit: int) -> None:
    """FilterLogEvents' `limit` bounds, checked alike by every LogStore."""
    if not 1 <= limit <= MAX_FILTER_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_FILTER_LIMIT}.")


def check_describe_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_DESCRIBE_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_DESCRIBE_LIMIT}.")


@dataclass(frozen=True)
class DescribePage:
    """DescribeLogGroups `logGroups` or DescribeLogStreams `logStreams` items, and the token
    of the next page."""

    items: list[dict[str, Any]]
    next_token: str | None


@dataclass(frozen=True)
class FilterResult:
    events: list[dict[str, Any]]  # FilterLogEvents items: logStreamName, timestamp, message...
    next_token: str | None


class LogStore(Protocol):
    def append(
        self, tenant: str, log_group: str, log_stream: str, events: Sequence[tuple[int, str]]
    ) -> None: ...

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
        """Raises InvalidParameter for a limit, pattern or next_token it cannot take."""
        ...

    def log_group_exists(self, tenant: str, log_group: str) -> bool: ...

    def describe_groups(
        self, tenant: str, *, prefix: str | None, limit: int, next_token: str | None
    ) -> DescribePage:
        """The tenant's groups in name order, `logGroupName`, `creationTime`, `storedBytes`."""
        ...

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
        """A group's streams by name (or by last event time), with `logStreamName`,
        `creationTime`, `firstEventTimestamp`, `lastEventTimestamp`, `lastIngestionTime`."""
        ...
