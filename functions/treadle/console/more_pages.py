"""Repositories (tree, log, blob), facets, and the admin's tenants."""

from __future__ import annotations

from typing import Any

from treadle.api.http import Response
from treadle.console.api import Api, ApiError, CallAs, seg
from treadle.console.web import Console, Ctx, redirect

_BLOB_SHOWN = 256 * 1024
# The quota fields the admin edits, as `/v1/tenants/{account}` names them.
QUOTAS = (
    "maxFunctions",
    "maxCodeBytes",
    "maxRunningExecutions",
    "maxStartsPerSecond",
    "maxQueued",
    "maxFacets",
    "maxFacetBytes",
)


class MorePages:
    def __init__(self, console: Console, call_as: CallAs) -> None:
        self.console = console
        self.call_as = call_as

    def register(self) -> None:
        c = self.console
        c.add("GET", "/repos", self.repos)
        c.add("GET", "/repos/{repo}", self.tree)
        c.add("GET", "/repos/{repo}/log", self.log)
        c.add("GET", "/repos/{repo}/blob", self.blob)
        c.add("GET", "/facets", self.facets)
        c.add("GET", "/tenants", self.tenants, admin=True)
        c.add("POST", "/tenants/{account}/{action}", self.tenant_action, admin=True)

    def _api(self, ctx: Ctx) -> Api:
        return Api(
            self.call_as,
            ctx.session.tenant,
            ctx.session.key_id,
            ctx.request.source_address,
        )

    def _page(self, ctx: Ctx, template: str, load: Any) -> Response:
        try:
            data = load(self._api(ctx))
        except ApiError as err:
            return self.console.render(ctx, "error.html", err.status, message=err.message)
        return self.console.render(ctx, template, **data)

    def repos(self, ctx: Ctx) -> Response:
        return self._page(ctx, "repos.html", lambda api: api.get("/v1/repos", limit="1000"))

    def tree(self, ctx: Ctx) -> Response:
        repo, ref, path = ctx.params["repo"], ctx.q("ref") or "HEAD", ctx.q("path")

        def load(api: Api) -> dict[str, Any]:
            listing = api.get(f"/v1/repos/{seg(repo)}/tree", ref=ref, path=path)
            refs = api.get(f"/v1/repos/{seg(repo)}").get("refs", {})
            return {"repo": repo, "ref": ref, "path": path, "refs": refs, **listing}

        return self._page(ctx, "repo_tree.html", load)

    def log(self, ctx: Ctx) -> Response:
        repo, ref = ctx.params["repo"], ctx.q("ref") or "HEAD"

        def load(api: Api) -> dict[str, Any]:
            commits = api.get(f"/v1/repos/{seg(repo)}/commits", ref=ref, limit="100")
            return {"repo": repo, "ref": ref, **commits}

        return self._page(ctx, "repo_log.html", load)

    def blob(self, ctx: Ctx) -> Response:
        repo, ref, path = ctx.params["repo"], ctx.q("ref") or "HEAD", ctx.q("path")

        def load(api: Api) -> dict[str, Any]:
            data = api.raw(f"/v1/repos/{seg(repo)}/blob", ref=ref, path=path)
            try:
                text: str | None = data[:_BLOB_SHOWN].decode("utf-8")
            except UnicodeDecodeError:
                text = None  # binary: only its size is shown
            cut = len(data) > _BLOB_SHOWN
            return {"repo": repo, "ref": ref, "path": path, "text": text, "size": len(data)} | {
                "cut": cut
            }

        return self._page(ctx, "repo_blob.html", load)

    def facets(self, ctx: Ctx) -> Response:
        return self._page(ctx, "facets.html", lambda api: api.get("/v1/facets"))

    # -- the admin -----------------------------------------------------------------

    def tenants(self, ctx: Ctx) -> Response:
        return self._page(
            ctx,
            "tenants.html",
            lambda api: {**api.get("/v1/tenants", limit="1000"), "quota_names": QUOTAS},
        )

    def tenant_action(self, ctx: Ctx) -> Response:
        account, action = ctx.params["account"], ctx.params["action"]
        body: dict[str, Any]
        if action in ("disable", "enable"):
            body = {"disabled": action == "disable"}
        elif action == "quotas":
            try:
                body = {"quotas": _quotas(ctx.form)}
            except ValueError as exc:
                return self.console.render(ctx, "error.html", 400, message=str(exc))
        else:
            return self.console.render(ctx, "error.html", 404, message="No such action.")
        try:
            self._api(ctx).call("PATCH", f"/v1/tenants/{seg(account)}", body=body)
        except ApiError as err:
            return self.console.render(ctx, "error.html", err.status, message=err.message)
        return redirect("/console/tenants")


def _quotas(form: dict[str, str]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for name in QUOTAS:
        raw = form.get(name, "").strip()
        if not raw:
            continue
        try:
            out[name] = float(raw) if name == "maxStartsPerSecond" else int(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number, not {raw!r}.") from None
    return out
