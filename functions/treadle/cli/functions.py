"""`treadle functions list|deploy`."""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path
from typing import Any

from treadle.cli.remote import CliError, Remote, aws_errors, paginate
from treadle.cli.render import Output, when

# Not part of a function's code: caches and the checkout's own metadata.
_SKIP_DIRS = frozenset({"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache"})
# Treadle runs tenant code as the tenant's own sandbox identity, not under an IAM role; Lambda's
# API requires one, so a placeholder is recorded unless the user names one.
_ROLE = "arn:aws:iam::000000000000:role/treadle-function"


def list_(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    with aws_errors(remote.endpoint):
        functions = paginate(remote.lambda_().list_functions, "Functions", None)
    if out.as_json:
        out.json(functions)
        return 0
    out.table(
        f"{len(functions)} function(s)",
        ("name", "runtime", "handler", "memory", "timeout", "code bytes", "modified"),
        [
            [
                f["FunctionName"],
                f.get("Runtime", ""),
                f.get("Handler", ""),
                str(f.get("MemorySize", "")),
                str(f.get("Timeout", "")),
                str(f.get("CodeSize", "")),
                when(f.get("LastModified")),
            ]
            for f in functions
        ],
    )
    return 0


def zip_dir(path: Path) -> bytes:
    if not path.is_dir():
        raise CliError(f"{path} is not a directory", 2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(path.rglob("*")):
            rel = file.relative_to(path)
            if file.is_file() and not _SKIP_DIRS.intersection(rel.parts):
                zf.write(file, rel.as_posix())
    if not buf.getbuffer().nbytes or not zipfile.ZipFile(buf).namelist():
        raise CliError(f"{path} holds no file to deploy", 2)
    return buf.getvalue()


def _environment(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--env {pair!r}: expected KEY=VALUE", 2)
        env[key] = value
    return env


def deploy(remote: Remote, out: Output, args: argparse.Namespace) -> int:
    """Create the function from a directory, or replace its code; publish a version on ask."""
    code = zip_dir(Path(args.directory))
    name = args.name or Path(args.directory).resolve().name
    env = _environment(args.env) if args.env else None
    lam = remote.lambda_()
    with aws_errors(remote.endpoint):
        try:
            lam.get_function(FunctionName=name)
            exists = True
        except lam.exceptions.ResourceNotFoundException:
            exists = False
        if exists:
            if env is not None:
                lam.update_function_configuration(FunctionName=name, Environment={"Variables": env})
                lam.get_waiter("function_updated_v2").wait(FunctionName=name)
            answer: Any = lam.update_function_code(
                FunctionName=name, ZipFile=code, Publish=args.publish
            )
            what = "updated"
        else:
            answer = lam.create_function(
                FunctionName=name,
                Runtime=args.runtime,  # type: ignore[arg-type]
                Role=args.role or _ROLE,
                Handler=args.handler,
                Code={"ZipFile": code},
                Timeout=args.timeout,
                MemorySize=args.memory,
                Publish=args.publish,
                DurableConfig={"ExecutionTimeout": args.execution_timeout},
                Environment={"Variables": env or {}},
            )
            what = "created"
    if out.as_json:
        out.json(answer)
    else:
        out.text(f"{what} {answer['FunctionArn']} (version {answer.get('Version', '$LATEST')})")
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("functions", help="list and deploy functions")
    cmds = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    cmds.add_parser("list", parents=[common], help="the tenant's functions").set_defaults(run=list_)
    d = cmds.add_parser(
        "deploy",
        parents=[common],
        help="create a durable function from a directory, or update its code",
    )
    d.add_argument("directory", metavar="DIRECTORY", help="the code: every file under it is zipped")
    d.add_argument("--name", help="the function's name (default: the directory's name)")
    d.add_argument(
        "--handler", default="handler.handler", help="module.function (default: handler.handler)"
    )
    d.add_argument("--runtime", default="python3.11", help="(default: python3.11)")
    d.add_argument("--timeout", type=int, default=30, help="seconds per invocation (default: 30)")
    d.add_argument("--memory", type=int, default=512, help="MB (default: 512)")
    d.add_argument(
        "--execution-timeout",
        type=int,
        default=86400,
        help="seconds a durable execution may last (default: 86400)",
    )
    d.add_argument("--role", help=f"the execution role ARN (default: {_ROLE})")
    d.add_argument(
        "--env",
        action="append",
        metavar="KEY=VALUE",
        help="an environment variable (repeat for several; replaces them all; "
        "default: unchanged, none for a new function)",
    )
    d.add_argument("--publish", action="store_true", help="publish a version (default: no)")
    d.set_defaults(run=deploy)
