"""The /v1 OpenAPI document and the router the platform really serves agree, route for
route; the document is valid OpenAPI 3.1."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from openapi_spec_validator import validate

from treadle.api.openapi import build_document, operations
from treadle.api.openapi_ops import PATH_PARAMS, STATUS_TEXT, Op
from treadle.platform import open_platform
from treadle.settings import Settings


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[tuple[str, str]]]:
    """(METHOD, template) of every /v1 route, from the platform as `treadle dev` builds it."""
    platform = open_platform(Settings(data_dir=tmp_path_factory.mktemp("platform") / "data"))
    try:
        yield set(platform.app.v1.routes())
    finally:
        platform.close()


def documented(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_every_served_v1_route_is_documented(served: set[tuple[str, str]]) -> None:
    missing = served - documented(build_document())
    assert not missing, f"add to the area's OPERATIONS (api/v1_*.py): {sorted(missing)}"


def test_every_documented_operation_is_served(served: set[tuple[str, str]]) -> None:
    ghosts = documented(build_document()) - served
    assert not ghosts, f"documented but no route: {sorted(ghosts)}"


def test_the_comparison_sees_a_route_added_without_its_operation(
    served: set[tuple[str, str]],
) -> None:
    # What a new area forgetting its OPERATIONS looks like to the first test.
    extra = served | {("POST", "/v1/widgets")}
    assert extra - documented(build_document()) == {("POST", "/v1/widgets")}
    with_it = build_document([Op("post", "/v1/widgets", "Create a widget", 201)])
    assert extra - documented(with_it) == set()


def test_every_path_parameter_is_described() -> None:
    for op in operations():
        for name in re.findall(r"\{(\w+)\}", op.path):
            assert name in PATH_PARAMS, f"{op.path}: describe {{{name}}} in PATH_PARAMS"


def test_an_operation_declared_twice_is_refused() -> None:
    twice = Op("get", "/v1/health", "Liveness again")
    with pytest.raises(ValueError, match="GET /v1/health is declared twice"):
        build_document([twice])


def test_every_error_status_has_a_shared_response() -> None:
    for op in operations():
        assert set(op.errors) <= set(STATUS_TEXT), op.path


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(build_document())


def test_an_arn_path_parameter_is_one_percent_encoded_segment() -> None:
    ops = build_document()["paths"]["/v1/executions/{Arn}/events"]["post"]
    (arn,) = [p for p in ops["parameters"] if p["name"] == "Arn"]
    pattern = re.compile(arn["schema"]["pattern"])
    (example,) = arn["schema"]["examples"]
    assert pattern.match(example) and "%2F" in arn["schema"]["description"]
    assert not pattern.match("not-an-arn")


def test_operation_ids_are_unique_identifiers() -> None:
    ids = [op["operationId"] for ops in build_document()["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+[A-Za-z0-9]*", i) for i in ids), ids
