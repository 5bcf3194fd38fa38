"""The README's table of supported AWS operations, generated from the router.

Each route of the Lambda-compatible surface is matched against botocore's own model of
the Lambda API (method and request URI), so the table names operations as AWS does and
cannot list one the router does not serve. `python -m tools.operations_doc` rewrites
the table between its markers in README.md; a test fails when it is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import botocore.session

from treadle.api.alias_routes import AliasApi
from treadle.api.http import Router
from treadle.api.lambda_routes import LambdaApi
from treadle.api.logs_routes import SUPPORTED as LOGS_OPERATIONS

ROOT = Path(__file__).resolve().parent.parent  # the checkout: this is a dev tool
README = ROOT / "README.md"
START, END = "<!-- operations:start -->", "<!-- operations:end -->"
_PLACEHOLDER = re.compile(r"\{[^}]+\}")


def _shape(method: str, path: str) -> tuple[str, str]:
    return method, _PLACEHOLDER.sub("{}", path.split("?")[0].rstrip("/"))


def lambda_operations() -> tuple[list[tuple[str, str, str]], int]:
    """(operation, method, path) the router serves, and how many the Lambda API has."""
    router = Router()
    # Only the routes are read: the handlers are never called.
    executions = SimpleNamespace(engine=None)
    LambdaApi(cast(Any, None), cast(Any, executions)).register(router)
    AliasApi(cast(Any, None)).register(router)
    served = {_shape(method, template) for method, template in router.routes()}
    model = botocore.session.get_session().get_service_model("lambda")
    found = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        method, uri = http["method"], http["requestUri"]
        if _shape(method, uri) in served:
            found.append((name, method, uri.split("?")[0]))
    return sorted(found), len(model.operation_names)


def render() -> str:
    operations, total = lambda_operations()
    lines = [
        START,
        f"Lambda ({len(operations)} of the API's {total} operations; the others answer 404 "
        "`UnknownOperationException`, or 405 on a known path):",
        "",
        "| operation | method | path |",
        "|---|---|---|",
        *(f"| `{name}` | {method} | `{path}` |" for name, method, path in operations),
        "",
        "CloudWatch Logs: " + ", ".join(f"`{op}`" for op in sorted(LOGS_OPERATIONS)) + ".",
        END,
    ]
    return "\n".join(lines)


def updated(readme: str) -> str:
    head, found, rest = readme.partition(START)
    if not found:
        raise ValueError(f"README.md has no {START} marker")
    _, found, tail = rest.partition(END)
    if not found:
        raise ValueError(f"README.md has no {END} marker")
    return head + render() + tail


def main() -> int:
    README.write_text(updated(README.read_text()))
    print(f"wrote the operations table of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
