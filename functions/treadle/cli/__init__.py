"""The `treadle` command line: `treadle dev` runs the platform; the other commands are its
clients (executions, logs, functions, tenants), configured like the AWS CLI."""

from __future__ import annotations

import argparse
import sys

from treadle.cli import dev


def _common() -> argparse.ArgumentParser:
    """The options every client command takes (after its own name, as the AWS CLI's)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--profile", help="credentials profile (default: $AWS_PROFILE or 'default')"
    )
    common.add_argument(
        "--endpoint-url",
        help="the Treadle URL (default: $AWS_ENDPOINT_URL, as `treadle dev` prints)",
    )
    common.add_argument("--region", help="(default: the profile's, or us-east-1)")
    common.add_argument(
        "--json",
        action="store_true",
        help="print JSON for scripts instead of tables (default: tables)",
    )
    return common


def parser(*, clients: bool = True) -> argparse.ArgumentParser:
    """Every command; `clients=False`: `dev` alone (see `main`)."""
    top = argparse.ArgumentParser(prog="treadle", description="Durable workflows, embedded.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev.add_parser(sub)
    if clients:
        from treadle.cli import executions, functions, logs, tenants

        common = _common()
        for module in (executions, logs, functions, tenants):
            module.add_parser(sub, common)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `treadle dev` is parsed without the client commands: their modules (boto3, rich) are
    # a tenth of a second of the platform's start and have no part in running it.
    args = parser(clients=argv[:1] != ["dev"]).parse_args(argv)
    args.argv = argv  # `treadle dev --processes N` starts the others with the same
    if args.command == "dev":
        # `dev` sets up its own lines from its settings (--log-level, --log-format).
        return int(args.run(args))
    from treadle.cli.remote import CliError, Remote
    from treadle.cli.render import Output

    try:
        remote = Remote.open(args.profile, args.endpoint_url, args.region)
        return int(args.run(remote, Output(args.json), args))
    except CliError as exc:
        print(f"treadle: {exc.message}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
