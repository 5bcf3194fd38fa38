"""What the client commands print: Rich tables for people, `--json` for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

# Decoding is shared with the web console.
from treadle.payloads import event_details


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        # Piped output has no terminal width; rich would fold every table at 80 columns.
        wide = None if sys.stdout.isatty() else 200
        self.console = Console(highlight=False, soft_wrap=False, width=wide)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(jsonable(data), indent=2, sort_keys=True) + "\n")
        sys.stdout.flush()

    def json_line(self, data: Any) -> None:
        sys.stdout.write(json.dumps(jsonable(data), sort_keys=True) + "\n")
        sys.stdout.flush()

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        table = Table(title=title, title_justify="left")
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    def text(self, line: str) -> None:
        self.console.print(line, markup=False)


def jsonable(value: Any) -> Any:
    """boto3 answers hold datetimes and streams: ISO 8601 strings for JSON output."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def brief(value: Any, width: int = 100) -> str:
    """A decoded value on one line, cut at `width`."""
    text = value if isinstance(value, str) else json.dumps(jsonable(value), default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def event_row(event: dict[str, Any], width: int = 100) -> list[str]:
    return [
        str(event.get("EventId", "")),
        when(event.get("EventTimestamp")),
        str(event.get("EventType", "")),
        str(event.get("Name") or ""),
        brief(event_details(event), width),
    ]


EVENT_COLUMNS = ("#", "time (UTC)", "event", "operation", "details")
