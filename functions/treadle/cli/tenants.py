"""`treadle tenants list|show|create|update` (the platform admin's key: --profile treadle-admin)."""

from __future__ import annotations

import argparse
from typing import Any

from treadle.cli.remote import CliError, Remote
from treadle.cli.render import Output, when

# The /v1 quota names, as options: --max-functions 10 sets maxFunctions.
_QUOTAS = {
    "max_functions": ("maxFunctions", int),
    "max_code_bytes": ("maxCodeBytes", int),
    "max_running_executions": ("maxRunningExecutions", int),
    "max_starts_per_second": ("maxStartsPerSecond", float),
    "max_queued": ("maxQueued", int),
    "max_facets": ("maxFacets", int),
    "max_facet_bytes": ("maxFacetBytes", int),
}


def _rows(tenants: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            t["accountId"],
            t.get("name", ""),
            "disabled" if t.get("disabled") else "enabled",
            when(t.get("createdAt")),
            ", ".join(f"{k}={v}" for k, v in sorted(t.get("quotas", {}).items())),
        ]
        for t in tenants
    ]


_COLUMNS = ("account", "name", "state", "created (UTC)", "quotas")


def list_(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    tenants: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        page = remote.v1("GET", "/v1/tenants", query={"limit": 1000, "marker": marker})
        tenants += page["tenants"]
        marker = page.get("nextMarker")
        if not marker:
            break
    if out.as_json:
        out.json(tenants)
    else:
        out.table(f"{len(tenants)} tenant(s)", _COLUMNS, _rows(tenants))
    return 0


def show(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    tenant = remote.v1("GET", f"/v1/tenants/{args.account}")
    if out.as_json:
        out.json(tenant)
    else:
        out.table(f"tenant {args.account}", _COLUMNS, _rows([tenant]))
    return 0


def _quotas(args: argparse.Namespace) -> dict[str, Any]:
    return {
        wire: getattr(args, opt)
        for opt, (wire, _) in _QUOTAS.items()
        if getattr(args, opt) is not None
    }


def create(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.account:
        body["accountId"] = args.account
    if quotas := _quotas(args):
        body["quotas"] = quotas
    made = remote.v1("POST", "/v1/tenants", body)
    if out.as_json:
        out.json(made)
        return 0
    key = made["accessKey"]
    out.table("tenant created", _COLUMNS, _rows([made["tenant"]]))
    out.text(
        "Its key (the secret is shown once):\n"
        f"  aws_access_key_id = {key['accessKeyId']}\n"
        f"  aws_secret_access_key = {key['secretAccessKey']}"
    )
    return 0


def update(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.disable or args.enable:
        body["disabled"] = bool(args.disable)
    if quotas := _quotas(args):
        body["quotas"] = quotas
    if not body:
        raise CliError("nothing to change: give --disable, --enable or a quota option", 2)
    tenant = remote.v1("PATCH", f"/v1/tenants/{args.account}", body)
    if out.as_json:
        out.json(tenant)
    else:
        out.table(f"tenant {args.account}", _COLUMNS, _rows([tenant]))
    return 0


def _quota_options(p: argparse.ArgumentParser) -> None:
    for opt, (wire, kind) in _QUOTAS.items():
        p.add_argument(
            "--" + opt.replace("_", "-"),
            type=kind,
            default=None,
            help=f"quota {wire} (default: unchanged, or the platform's)",
        )


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("tenants", help="manage tenants (the admin's key: --profile treadle-admin)")
    cmds = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmds.add_parser("list", parents=[common], help="every tenant").set_defaults(run=list_)
    s = cmds.add_parser("show", parents=[common], help="one tenant and its quotas")
    s.add_argument("account", metavar="ACCOUNT_ID", help="the tenant's 12-digit account id")
    s.set_defaults(run=show)
    c = cmds.add_parser("create", parents=[common], help="a tenant and its first key")
    c.add_argument("name", metavar="NAME", help="a name for people")
    c.add_argument("--account", help="its 12-digit account id (default: generated)")
    _quota_options(c)
    c.set_defaults(run=create)
    u = cmds.add_parser("update", parents=[common], help="disable, enable or change quotas")
    u.add_argument("account", metavar="ACCOUNT_ID", help="the tenant's 12-digit account id")
    state = u.add_mutually_exclusive_group()
    state.add_argument(
        "--disable", action="store_true", help="refuse its keys (default: unchanged)"
    )
    state.add_argument(
        "--enable", action="store_true", help="accept its keys again (default: unchanged)"
    )
    _quota_options(u)
    u.set_defaults(run=update)
