"""The README's table of supported operations is the router's, named by AWS's model."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from tools.operations_doc import README, lambda_operations, render

from treadle.api.alias_routes import AliasApi
from treadle.api.http import Router
from treadle.api.lambda_routes import LambdaApi


def test_the_readme_table_is_up_to_date() -> None:
    assert render() in README.read_text(), "run: python -m tools.operations_doc"


def test_every_route_is_an_operation_of_the_lambda_api() -> None:
    router = Router()
    LambdaApi(cast(Any, None), cast(Any, SimpleNamespace(engine=None))).register(router)
    AliasApi(cast(Any, None)).register(router)
    operations, total = lambda_operations()
    # Each route is one operation of botocore's model: none is served under a path AWS
    # does not have, and none is left out of the table.
    assert len(operations) == len(router.routes())
    assert total > len(operations)
    assert "Invoke" in {name for name, _, _ in operations}
