"""The import direction of the layers, read from the source (ast), not from a diagram.

entrypoints, api and the composition roots -> app -> artifacts, tenancy -> domain, and
adapters -> domain (never api). The domain imports only the standard library, pydantic
and itself; SQLite is touched only by its adapters.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import treadle

ROOT = Path(treadle.__file__).parent


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. treadle.app.code_delivery
    name: str  # the imported module, e.g. treadle.adapters.local.code
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(module: str, source: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import in the source, at any depth (functions, TYPE_CHECKING blocks)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield Import(module, name, node.lineno)


def all_imports() -> list[Import]:
    found: list[Import] = []
    for path in sorted(ROOT.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        found.extend(imports_of(_module_name(path), source, is_package=path.name == "__init__.py"))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _stdlib(name: str) -> bool:
    return name.split(".")[0] in sys.stdlib_module_names or name == "__future__"


@dataclass(frozen=True)
class Rule:
    layer: str  # the importing package the rule applies to
    allowed: Callable[[str], bool]
    why: str


RULES = [
    Rule(
        "treadle.domain",
        lambda name: _stdlib(name) or _within(name, "pydantic") or _within(name, "treadle.domain"),
        "the domain imports only the standard library, pydantic and treadle.domain",
    ),
    *(
        Rule(
            layer,
            lambda name: not _within(name, "treadle.adapters") and not _within(name, "treadle.api"),
            f"{layer} imports no adapter and nothing of the HTTP API",
        )
        for layer in ("treadle.app", "treadle.artifacts", "treadle.tenancy", "treadle.facets")
    ),
    Rule(
        "treadle.adapters",
        lambda name: not _within(name, "treadle.api"),
        "adapters import nothing of the HTTP API",
    ),
    # Only the composition roots' callers (cli, entrypoints) reach the platform package:
    # nothing below it may choose adapters or build the platform.
    *(
        Rule(
            layer,
            lambda name: (
                not any(
                    _within(name, root)
                    for root in ("treadle.platform", "treadle.entrypoints", "treadle.cli")
                )
            ),
            f"{layer} does not reach up to the composition roots or their callers",
        )
        for layer in (
            "treadle.domain",
            "treadle.app",
            "treadle.api",
            "treadle.artifacts",
            "treadle.tenancy",
            "treadle.facets",
            "treadle.adapters",
        )
    ),
]
# (module, imported name, why): a technology confined to its adapter package.
CONFINED = [
    (
        "treadle.adapters.sqlite",
        "sqlite3",
        "only the SQLite adapters (adapters/sqlite/) use SQLite",
    ),
    *(
        (
            (
                "treadle.adapters.aws",
                "treadle.platform.aws",
                "treadle.adapters.sandbox",
                "treadle.cli",
            ),
            library,
            "only the AWS adapters and the AWS backend's root talk to AWS (the sandbox runs "
            "tenant code, whose SDK speaks through boto3; the CLI is a client of the API, as "
            "the AWS CLI is)",
        )
        for library in ("boto3", "botocore")
    ),
]


def violations(imports: list[Import]) -> list[str]:
    found = []
    for imp in imports:
        for rule in RULES:
            if _within(imp.module, rule.layer) and not rule.allowed(imp.name):
                found.append(f"{imp.module} imports {imp.name} (line {imp.line}): {rule.why}")
        for home, name, why in CONFINED:
            homes = (home,) if isinstance(home, str) else home
            if _within(imp.name, name) and not any(_within(imp.module, h) for h in homes):
                found.append(f"{imp.module} imports {imp.name} (line {imp.line}): {why}")
    return found


def test_the_package_respects_the_import_direction() -> None:
    imports = all_imports()
    for rule in RULES:  # a renamed package must not make its rule vacuous
        assert any(_within(i.module, rule.layer) for i in imports), rule.layer
    found = violations(imports)
    assert not found, "imports against the layering:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        ("treadle.domain.x", "import requests", "treadle.domain.x imports requests (line 1)"),
        (
            "treadle.app.x",
            "def f():\n    from treadle.adapters.local import code",
            "treadle.app.x imports treadle.adapters.local (line 2)",
        ),
        (
            "treadle.artifacts.x",
            "from ..api.http import Request",
            "treadle.artifacts.x imports treadle.api.http (line 1)",
        ),
        (
            "treadle.tenancy.x",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import treadle.api.auth",
            "treadle.tenancy.x imports treadle.api.auth (line 3)",
        ),
        ("treadle.adapters.aws.x", "from treadle.api import http", "imports treadle.api (line 1)"),
        ("treadle.adapters.local.x", "import sqlite3", "treadle.adapters.local.x imports sqlite3"),
        ("treadle.app.x", "from treadle.platform import base", "imports treadle.platform (line 1)"),
        ("treadle.api.x", "import botocore.exceptions", "imports botocore.exceptions (line 1)"),
    ],
)
def test_a_violation_names_the_module_and_the_import(
    module: str, source: str, complaint: str
) -> None:
    found = violations(list(imports_of(module, source)))
    assert len(found) == 1 and complaint in found[0], found


def test_allowed_imports_pass() -> None:
    source = "import json\nfrom pydantic import BaseModel\nfrom treadle.domain import errors"
    assert violations(list(imports_of("treadle.domain.x", source))) == []
    assert violations(list(imports_of("treadle.adapters.sqlite.x", "import sqlite3"))) == []
