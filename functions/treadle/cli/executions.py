"""`treadle executions list|show|history|tail|stop|redrive`.

An execution is named by its ARN or as FUNCTION/EXECUTION_NAME (the newest of that name).
"""

from __future__ import annotations

import argparse
import time
import urllib.parse
from typing import Any

from treadle.cli.remote import CliError, Remote, aws_errors, paginate
from treadle.cli.render import EVENT_COLUMNS, Output, brief, event_row, when
from treadle.payloads import decoded

_CLOSED = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED"})
_STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED", "PAUSED")
_REF_HELP = "the execution's ARN, or FUNCTION/EXECUTION_NAME"


def resolve(remote: Remote, ref: str) -> str:
    """An execution ARN from what the user typed."""
    if ref.startswith("arn:"):
        return ref
    function, sep, name = ref.partition("/")
    if not sep or not function or not name:
        raise CliError(f"{ref!r} is neither an execution ARN nor FUNCTION/EXECUTION_NAME", 2)
    with aws_errors(remote.endpoint):
        found = remote.lambda_().list_durable_executions_by_function(
            FunctionName=function, DurableExecutionName=name, ReverseOrder=True, MaxItems=1
        )["DurableExecutions"]
    if not found:
        raise CliError(f"no execution named {name!r} of function {function!r}")
    return found[0]["DurableExecutionArn"]


def list_(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    lam = remote.lambda_()
    filters: dict[str, Any] = {"ReverseOrder": True}
    if args.status:
        filters["Statuses"] = args.status
    if args.name:
        filters["DurableExecutionName"] = args.name
    with aws_errors(remote.endpoint):
        functions = (
            [args.function]
            if args.function
            else [f["FunctionName"] for f in paginate(lam.list_functions, "Functions", None)]
        )
        rows: list[dict[str, Any]] = []
        for fn in functions:
            rows += paginate(
                lam.list_durable_executions_by_function,
                "DurableExecutions",
                args.limit,
                FunctionName=fn,
                **filters,
            )
    rows.sort(key=lambda e: e.get("StartTimestamp") or 0, reverse=True)
    rows = rows[: args.limit]
    if out.as_json:
        out.json(rows)
        return 0
    out.table(
        f"{len(rows)} execution(s)",
        ("name", "function", "status", "started (UTC)", "ended (UTC)", "ARN"),
        [
            [
                e.get("DurableExecutionName", ""),
                e.get("FunctionArn", "").split(":")[6] if e.get("FunctionArn") else "",
                e.get("Status", ""),
                when(e.get("StartTimestamp")),
                when(e.get("EndTimestamp")),
                e["DurableExecutionArn"],
            ]
            for e in rows
        ],
    )
    return 0


def show(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    arn = resolve(remote, args.execution)
    with aws_errors(remote.endpoint):
        ex = dict(
            remote.lambda_().get_durable_execution(
                DurableExecutionArn=arn, IncludeExecutionData=True
            )
        )
    ex = decoded(ex)
    if out.as_json:
        out.json(ex)
        return 0
    shown = (
        "DurableExecutionName",
        "Status",
        "FunctionArn",
        "Version",
        "StartTimestamp",
        "EndTimestamp",
        "InputPayload",
        "Result",
        "Error",
        "RedrivenFrom",
        "RedrivenTo",
    )
    rows = [
        [k, when(ex[k]) if k.endswith("Timestamp") else brief(ex[k], 200)]
        for k in shown
        if ex.get(k) is not None
    ]
    out.table(arn, ("field", "value"), rows)
    return 0


def _history(remote: Remote, arn: str) -> list[dict[str, Any]]:
    with aws_errors(remote.endpoint):
        return paginate(
            remote.lambda_().get_durable_execution_history,
            "Events",
            None,
            DurableExecutionArn=arn,
            IncludeExecutionData=True,
        )


def history(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    arn = resolve(remote, args.execution)
    events = _history(remote, arn)
    if out.as_json:
        out.json(decoded(events))
        return 0
    out.table(f"{arn}: {len(events)} event(s)", EVENT_COLUMNS, [event_row(e) for e in events])
    return 0


def tail(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    """Print the history as it grows, until the execution closes (or Ctrl-C)."""
    arn = resolve(remote, args.execution)
    lam = remote.lambda_()
    seen = 0
    while True:
        with aws_errors(remote.endpoint):
            status = lam.get_durable_execution(DurableExecutionArn=arn)["Status"]
        # Read after the status: a close's events are in by the time it is CLOSED.
        for event in _history(remote, arn):
            if int(event.get("EventId", 0)) <= seen:
                continue
            seen = int(event.get("EventId", 0))
            if out.as_json:
                out.json_line(decoded(event))
            else:
                out.text("  ".join(event_row(event, 160)))
        if status in _CLOSED:
            if not out.as_json:
                out.text(f"-- {status}")
            return 0 if status == "SUCCEEDED" else 1
        time.sleep(args.interval)


def stop(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    arn = resolve(remote, args.execution)
    error = {
        k: v for k, v in (("ErrorType", args.error_type), ("ErrorMessage", args.error_message)) if v
    }
    with aws_errors(remote.endpoint):
        lam = remote.lambda_()
        if error:
            answer = lam.stop_durable_execution(DurableExecutionArn=arn, Error=error)  # type: ignore[arg-type]
        else:
            answer = lam.stop_durable_execution(DurableExecutionArn=arn)
    if out.as_json:
        out.json({"DurableExecutionArn": arn, "StopTimestamp": answer.get("StopTimestamp")})
    else:
        out.text(f"stopped {arn}")
    return 0


def redrive(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    arn = resolve(remote, args.execution)
    body: dict[str, Any] = {}
    if args.from_step:
        body["fromStep"] = {"name": args.from_step, "occurrence": args.occurrence}
    if args.version:
        body["version"] = args.version
    if args.name:
        body["name"] = args.name
    answer = remote.v1("POST", f"/v1/executions/{urllib.parse.quote(arn, safe='')}/redrive", body)
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"redriven as {answer.get('executionArn', answer)}")
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("executions", help="list, inspect, follow, stop and redrive executions")
    cmds = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p_list = cmds.add_parser("list", parents=[common], help="newest first, every function or one")
    p_list.add_argument("-f", "--function", help="only this function's (default: every function)")
    p_list.add_argument(
        "--status",
        action="append",
        choices=_STATUSES,
        help="only these statuses (repeat the option for several; default: all)",
    )
    p_list.add_argument("--name", help="only executions of this name")
    p_list.add_argument("--limit", type=int, default=50, help="at most this many (default: 50)")
    p_list.set_defaults(run=list_)
    for name, run, text in (
        ("show", show, "an execution: status, input, result or error, links"),
        ("history", history, "every history event, payloads decoded"),
        ("tail", tail, "print history events as they happen until the execution closes"),
        ("stop", stop, "stop a running execution"),
        ("redrive", redrive, "run a closed execution again from a step (docs/redrive.md)"),
    ):
        c = cmds.add_parser(name, parents=[common], help=text)
        c.add_argument("execution", metavar="EXECUTION", help=_REF_HELP)
        c.set_defaults(run=run)
        if name == "tail":
            c.add_argument(
                "--interval", type=float, default=1.0, help="seconds between polls (default: 1)"
            )
        elif name == "stop":
            c.add_argument("--error-type", help="the Error.ErrorType to record (default: none)")
            c.add_argument(
                "--error-message", help="the Error.ErrorMessage to record (default: none)"
            )
        elif name == "redrive":
            c.add_argument(
                "--from-step",
                metavar="NAME",
                help="the step to run again from (default: the first failed step)",
            )
            c.add_argument(
                "--occurrence",
                type=int,
                default=1,
                help="which operation of that name, 1 is the first (default: 1)",
            )
            c.add_argument("--version", help="run on this version (default: the failed one's)")
            c.add_argument("--name", help="the new execution's name (default: generated)")
