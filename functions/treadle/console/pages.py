"""A tenant's pages: executions (list, page, timeline, actions) and functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from treadle.api.http import Response
from treadle.console import timeline
from treadle.console.api import Api, ApiError, CallAs, seg, tail_cursor
from treadle.console.web import Console, Ctx, redirect
from treadle.domain.models import TERMINAL_EXECUTION_STATUSES, ExecutionStatus
from treadle.payloads import decoded, event_details

F = "/2015-03-31/functions"
D = "/2025-12-01/durable-executions"
CLOSED = frozenset(s.value for s in TERMINAL_EXECUTION_STATUSES)
STATUSES = tuple(s.value for s in ExecutionStatus)
_MAX_LISTED = 200


def when(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, default=str)


def _function_of(arn: str) -> str:
    return arn.split(":")[6] if arn.count(":") >= 6 else arn


class TenantPages:
    def __init__(self, console: Console, call_as: CallAs, now: Any) -> None:
        self.console = console
        self.call_as = call_as
        self.now = now  # () -> epoch seconds: the end of an open timeline

    def register(self) -> None:
        c = self.console
        c.add("GET", "/executions", self.executions)
        c.add("GET", "/executions/{arn}", self.execution)
        c.add("GET", "/executions/{arn}/live", self.execution_live)
        c.add("POST", "/executions/{arn}/{action}", self.act)
        c.add("GET", "/functions", self.functions)
        c.add("GET", "/functions/{name}", self.function)

    def api(self, ctx: Ctx) -> Api:
        return Api(
            self.call_as,
            ctx.session.tenant,
            ctx.session.key_id,
            ctx.request.source_address,
        )

    def _error(self, ctx: Ctx, err: ApiError) -> Response:
        return self.console.render(ctx, "error.html", err.status, message=err.message)

    # -- executions ----------------------------------------------------------------

    def executions(self, ctx: Ctx) -> Response:
        api = self.api(ctx)
        try:
            cursor = tail_cursor(api)  # before the rows: a change after them is heard
        except ApiError as err:
            return self._error(ctx, err)
        names = [f["FunctionName"] for f in api.get(F, MaxItems="1000").get("Functions", [])]
        chosen = ctx.q("function")
        status = ctx.q("status")
        filters: dict[str, str | list[str]] = {
            "Statuses": [status] if status else [],
            "DurableExecutionName": ctx.q("name"),
            "StartedAfter": ctx.q("after"),
            "StartedBefore": ctx.q("before"),
        }
        rows: list[dict[str, Any]] = []
        try:
            for name in [chosen] if chosen else names:
                page = api.get(
                    f"/2025-12-01/functions/{seg(name)}/durable-executions",
                    ReverseOrder="true",
                    MaxItems=str(_MAX_LISTED),
                    **filters,
                )
                rows += page.get("DurableExecutions", [])
        except ApiError as err:
            return self._error(ctx, err)
        rows.sort(key=lambda e: e.get("StartTimestamp") or 0, reverse=True)
        return self.console.render(
            ctx,
            "executions.html",
            executions=rows[:_MAX_LISTED],
            functions=names,
            statuses=STATUSES,
            filters={"function": chosen, "status": status},
            q=ctx.q,
            when=when,
            function_of=_function_of,
            cursor=cursor,
        )

    def _execution_data(self, ctx: Ctx) -> dict[str, Any]:
        api = self.api(ctx)
        arn = ctx.params["arn"]
        ex = api.get(f"{D}/{seg(arn)}", IncludeExecutionData="true")
        events: list[dict[str, Any]] = []
        marker = ""
        while True:
            page = api.get(f"{D}/{seg(arn)}/history", Marker=marker, MaxItems="1000")
            events += page.get("Events", [])
            marker = page.get("NextMarker") or ""
            if not marker:
                break
        line = timeline.build(events, self.now())
        operations = _operations(events)
        return {
            "ex": decoded(ex),
            "arn": arn,
            "closed": ex.get("Status") in CLOSED,
            "events": events,
            "operations": operations,
            # Redrive names a step by name (its first occurrence): each name once.
            "step_names": list(dict.fromkeys(op["name"] for op in operations if op["name"])),
            "open_callbacks": _open_callbacks(events),
            "drawing": timeline.draw(line),
            "logs": self._logs(api, ex, events),
            "when": when,
            "pretty": pretty,
            "details": event_details,
        }

    def _logs(self, api: Api, ex: dict[str, Any], events: list[dict[str, Any]]) -> list[Any]:
        """The execution's lines: those of its invocations' streams (named after their
        request ids, without dashes), as `treadle logs EXECUTION` shows them."""
        suffixes = {
            str(e["InvocationCompletedDetails"]["RequestId"]).replace("-", "")
            for e in events
            if e.get("EventType") == "InvocationCompleted"
            and e.get("InvocationCompletedDetails", {}).get("RequestId")
        }
        if not suffixes:
            return []
        group = f"/aws/lambda/{_function_of(ex.get('FunctionArn', ''))}"
        start = int((ex.get("StartTimestamp") or 0) * 1000) - 1000
        try:
            page = api.call(
                "POST",
                "/",
                body={"logGroupName": group, "startTime": start, "limit": 1000},
                target="Logs_20140328.FilterLogEvents",
            )
        except ApiError:
            return []  # no log group yet: nothing was invoked
        return [
            e
            for e in page.get("events", [])
            if any(str(e.get("logStreamName", "")).endswith(s) for s in suffixes)
        ]

    def execution(self, ctx: Ctx) -> Response:
        try:
            cursor = tail_cursor(self.api(ctx))
            data = self._execution_data(ctx)
        except ApiError as err:
            return self._error(ctx, err)
        return self.console.render(
            ctx, "execution.html", **data, flash=ctx.q("done"), cursor=cursor
        )

    def execution_live(self, ctx: Ctx) -> Response:
        """The page's body alone: what the page's script swaps in while it is open."""
        try:
            data = self._execution_data(ctx)
        except ApiError as err:
            return self._error(ctx, err)
        return self.console.render(ctx, "execution_body.html", **data)

    def act(self, ctx: Ctx) -> Response:
        api = self.api(ctx)
        arn = ctx.params["arn"]
        action = ctx.params["action"]
        form = ctx.form
        try:
            if action in ("stop", "pause", "resume"):
                api.call("POST", f"{D}/{seg(arn)}/{action}", body={})
            elif action == "redrive":
                body: dict[str, Any] = {}
                if form.get("step"):
                    body["fromStep"] = {"name": form["step"]}
                out = api.call("POST", f"/v1/executions/{seg(arn)}/redrive", body=body)
                new_arn = out.get("executionArn") or out.get("DurableExecutionArn") or arn
                return redirect(f"/console/executions/{seg(new_arn)}?done=redriven")
            elif action == "event":
                payload = _json_field(form.get("payload", ""))
                api.call(
                    "POST",
                    f"/v1/executions/{seg(arn)}/events",
                    body={"type": form.get("type", ""), "payload": payload},
                )
            elif action == "callback":
                _json_field(form.get("payload", ""))  # refused here if not JSON
                callback = form.get("callback_id", "")
                api.call(
                    "POST",
                    f"/2025-12-01/durable-execution-callbacks/{seg(callback)}/succeed",
                    raw_body=(form.get("payload") or "null").encode(),
                )
            else:
                return self.console.render(ctx, "error.html", 404, message="No such action.")
        except ApiError as err:
            return self._error(ctx, err)
        return redirect(f"/console/executions/{seg(arn)}?done={action}")

    # -- functions -----------------------------------------------------------------

    def functions(self, ctx: Ctx) -> Response:
        listed = self.api(ctx).get(F, MaxItems="1000").get("Functions", [])
        return self.console.render(ctx, "functions.html", functions=listed)

    def function(self, ctx: Ctx) -> Response:
        name = ctx.params["name"]
        try:
            versions = self.api(ctx).get(f"/v1/functions/{seg(name)}/versions", limit="1000")
        except ApiError as err:
            return self._error(ctx, err)
        return self.console.render(
            ctx, "function.html", name=name, versions=versions.get("versions", []), when=when
        )


def _json_field(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        raise ApiError(400, 'The payload must be JSON (e.g. {"ok": true}).') from None


def _operations(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per operation: its kind, name, last event and decoded details."""
    ops: dict[str, dict[str, Any]] = {}
    for e in events:
        op_id = e.get("Id")
        etype = str(e.get("EventType", ""))
        if not op_id or etype.startswith(("Execution", "Invocation")):
            continue
        op = ops.setdefault(op_id, {"id": op_id, "name": e.get("Name") or "", "events": []})
        op["type"] = etype
        op["events"].append({"type": etype, "at": e.get("EventTimestamp"), **_shown(e)})
    return list(ops.values())


def _shown(event: dict[str, Any]) -> dict[str, Any]:
    details = event_details(event)
    return {"details": details} if details else {}


def _open_callbacks(events: list[dict[str, Any]]) -> list[dict[str, str]]:
    started: dict[str, dict[str, str]] = {}
    for e in events:
        etype = str(e.get("EventType", ""))
        if etype == "CallbackStarted":
            cid = e.get("CallbackStartedDetails", {}).get("CallbackId")
            if cid:
                started[str(e.get("Id"))] = {"id": str(cid), "name": str(e.get("Name") or "")}
        elif etype.startswith("Callback"):
            started.pop(str(e.get("Id")), None)
    return list(started.values())
