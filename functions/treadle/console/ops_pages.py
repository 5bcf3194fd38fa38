"""Usage, audit, and the live feed of status changes the pages' script reads.

Live updates are a long poll, not Server-Sent Events: the API's request model is one
buffered response per request (the ASGI server, and API Gateway + Lambda on AWS, which
cannot stream to a browser at all), so a held request that answers as soon as an event is
there works the same on both backends and through any proxy. The console route reads
`GET /v1/executions/events` as the session's own principal (`call_as`), so a tenant's
page only ever hears of its own executions.
"""

from __future__ import annotations

import json
from typing import Any

from treadle.api.http import Response
from treadle.console.api import STREAM, STREAM_PAGE, Api, ApiError, CallAs, seg, tail_cursor
from treadle.console.pages import when
from treadle.console.web import Console, Ctx

# Below API Gateway's 29 s and the stream's own 20 s cap; a held request costs one of the
# server's worker threads, so one per open tab, released at least every 15 s.
LIVE_WAIT_S = 15
AUDIT_PAGE = 50


def _change(event: dict[str, Any]) -> dict[str, Any]:
    detail = event.get("detail", {})
    return {
        "arn": detail.get("durableExecutionArn"),
        "name": detail.get("durableExecutionName"),
        "status": detail.get("status"),
        "previousStatus": detail.get("previousStatus"),
    }


class OpsPages:
    def __init__(self, console: Console, call_as: CallAs) -> None:
        self.console = console
        self.call_as = call_as

    def register(self) -> None:
        c = self.console
        c.add("GET", "/events", self.events)
        c.add("GET", "/usage", self.usage)
        c.add("GET", "/audit", self.audit)
        c.add("GET", "/admin/usage", self.usage_all, admin=True)
        c.add("GET", "/tenants/{account}/usage", self.tenant_usage, admin=True)
        c.add("GET", "/admin/audit", self.audit_all, admin=True)

    def _api(self, ctx: Ctx) -> Api:
        return Api(self.call_as, ctx.session.tenant, ctx.session.key_id, ctx.request.source_address)

    def _error(self, ctx: Ctx, err: ApiError) -> Response:
        return self.console.render(ctx, "error.html", err.status, message=err.message)

    # -- the live feed ---------------------------------------------------------------

    def events(self, ctx: Ctx) -> Response:
        """`{"cursor", "changes": [{arn, name, status, previousStatus}]}`: the changes
        after `cursor`, held up to LIVE_WAIT_S while there are none (`wait`: fewer
        seconds, 0 to only catch up)."""
        cursor = ctx.q("cursor")
        wait = ctx.q("wait") or str(LIVE_WAIT_S)
        if not wait.isdigit() or int(wait) > LIVE_WAIT_S:
            return _json(
                {"message": f"wait must be a whole number of seconds, 0 to {LIVE_WAIT_S}"}, 400
            )
        api = self._api(ctx)
        try:
            if not cursor:
                return _json({"cursor": tail_cursor(api), "changes": []})
            page = api.get(STREAM, cursor=cursor, limit=str(STREAM_PAGE), waitSeconds=wait)
        except ApiError as err:
            return _json({"message": err.message}, err.status)
        changes = [_change(e) for e in page.get("events", [])]
        return _json({"cursor": page.get("nextCursor") or cursor, "changes": changes})

    # -- usage -----------------------------------------------------------------------

    def usage(self, ctx: Ctx) -> Response:
        return self._usage(ctx, str(ctx.session.tenant))

    def tenant_usage(self, ctx: Ctx) -> Response:
        return self._usage(ctx, ctx.params["account"])

    def _usage(self, ctx: Ctx, account: str) -> Response:
        try:
            usage = self._api(ctx).get(f"/v1/tenants/{seg(account)}/usage")
        except ApiError as err:
            return self._error(ctx, err)
        return self.console.render(ctx, "usage.html", usage=usage, account=account, when=when)

    def usage_all(self, ctx: Ctx) -> Response:
        api = self._api(ctx)
        try:
            tenants = api.get("/v1/tenants", limit="1000").get("tenants", [])
            rows = [
                {"tenant": t, "usage": api.get(f"/v1/tenants/{seg(t['accountId'])}/usage")}
                for t in tenants
            ]
        except ApiError as err:
            return self._error(ctx, err)
        return self.console.render(ctx, "usage_all.html", rows=rows)

    # -- audit -----------------------------------------------------------------------

    def audit(self, ctx: Ctx) -> Response:
        return self._audit(ctx, "/v1/audit", admin=False)

    def audit_all(self, ctx: Ctx) -> Response:
        return self._audit(ctx, "/v1/admin/audit", admin=True)

    def _audit(self, ctx: Ctx, path: str, *, admin: bool) -> Response:
        filters = {"action": ctx.q("action"), "outcome": ctx.q("outcome"), "limit": ctx.q("limit")}
        if admin:
            filters["tenant"] = ctx.q("tenant")
        try:
            page = self._api(ctx).get(
                path,
                marker=ctx.q("marker"),
                **{**filters, "limit": filters["limit"] or str(AUDIT_PAGE)},
            )
        except ApiError as err:
            return self._error(ctx, err)
        # The next page's link keeps the filters (the marker alone would drop them).
        kept = "&".join(f"{k}={seg(v)}" for k, v in filters.items() if v)
        return self.console.render(
            ctx,
            "audit.html",
            records=page.get("records", []),
            next_marker=page.get("nextMarker"),
            filters=filters,
            kept=kept,
            base=f"/console{'/admin' if admin else ''}/audit",
            admin=admin,
            when=when,
        )


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(status, json.dumps(data).encode(), {"content-type": "application/json"})
