"""`treadle logs [--follow] FUNCTION|EXECUTION`: a function's log lines, or one execution's.

One execution's lines are those of its invocations: Lambda names each invocation's stream
after its request id (`YYYY/MM/DD/[VERSION]<request id without dashes>`), and the
execution's history names the request id of every invocation that has ended.
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime
from typing import Any

from treadle.cli.executions import resolve
from treadle.cli.remote import CliError, Remote, aws_errors, paginate
from treadle.cli.render import Output, when

_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_ms(text: str, now_ms: int) -> int:
    match = _SINCE.match(text)
    if match is None:
        raise CliError(f"--since {text!r}: expected a number and s, m, h or d (e.g. 10m)", 2)
    return now_ms - int(match.group(1)) * _UNIT_S[match.group(2)] * 1000


def _execution_streams(remote: Remote, arn: str) -> tuple[str, set[str], int, bool]:
    """The function's name, its invocations' stream suffixes, its start, whether closed."""
    lam = remote.lambda_()
    with aws_errors(remote.endpoint):
        ex = lam.get_durable_execution(DurableExecutionArn=arn)
        events = paginate(
            lam.get_durable_execution_history, "Events", None, DurableExecutionArn=arn
        )
    function = ex["FunctionArn"].split(":")[6]
    suffixes = {
        str(e["InvocationCompletedDetails"]["RequestId"]).replace("-", "")
        for e in events
        if e.get("EventType") == "InvocationCompleted"
        and e.get("InvocationCompletedDetails", {}).get("RequestId")
    }
    started = ex["StartTimestamp"]
    start_ms = int(started.timestamp() * 1000) if isinstance(started, datetime) else int(started)
    closed = ex["Status"] in ("SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED")
    return function, suffixes, start_ms, closed


def logs(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    target: str = args.target
    is_execution = target.startswith("arn:") or "/" in target
    arn = resolve(remote, target) if is_execution else None
    start_ms = since_ms(args.since, int(time.time() * 1000))
    seen: set[str] = set()
    client = remote.logs()
    while True:
        if arn is not None:
            function, suffixes, started, closed = _execution_streams(remote, arn)
            start_ms = max(start_ms, started - 1000)
        else:
            function, suffixes, closed = target, set(), False
        group = f"/aws/lambda/{function}"
        events: list[dict[str, Any]] = []
        token: str | None = None
        with aws_errors(remote.endpoint):
            while True:
                kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
                if token:
                    kwargs["nextToken"] = token
                page: dict[str, Any]
                try:
                    page = dict(client.filter_log_events(**kwargs))
                except client.exceptions.ResourceNotFoundException:
                    if not args.follow:
                        raise CliError(
                            f"no logs for {function} yet (it has not been invoked)"
                        ) from None
                    page = {}
                events += page.get("events", [])
                token = page.get("nextToken")
                if not token:
                    break
        for event in events:
            key = f"{event.get('logStreamName')}:{event.get('eventId')}"
            stream = str(event.get("logStreamName", ""))
            if key in seen or (arn is not None and not any(stream.endswith(s) for s in suffixes)):
                continue
            seen.add(key)
            if out.as_json:
                out.json_line(event)
            else:
                out.text(
                    f"{when(event.get('timestamp'))}  {stream}  {event.get('message', '')}".rstrip()
                )
        if not args.follow or closed:
            return 0
        if events:
            # The next poll asks from the newest line seen; `seen` drops the repeats.
            start_ms = max(start_ms, max(int(e.get("timestamp", 0)) for e in events))
        time.sleep(args.interval)


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("logs", parents=[common], help="a function's log lines, or one execution's")
    p.add_argument(
        "target",
        metavar="FUNCTION|EXECUTION",
        help="a function name, an execution ARN, or FUNCTION/EXECUTION_NAME",
    )
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new lines (an execution's: until it closes) (default: no)",
    )
    p.add_argument("--since", default="1h", help="how far back: 30s, 10m, 2h, 7d (default: 1h)")
    p.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between polls with --follow (default: 1)",
    )
    p.set_defaults(run=logs)
