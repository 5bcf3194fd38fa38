"""The CDK app lives in the repo root's `infra` package: make it importable.

One synthesis of the `qa` stage serves every test module here (about 2 s: jsii runs the
CDK in node), and one more of it with facets on AWS (`facets=True`) serves test_stack_facets.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# jsii runs the CDK in node; its banner about node 20 being end-of-life (CI should move
# to node 22 or 24) would otherwise be repeated in the output of every failing test.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@pytest.fixture(scope="session")
def assertion() -> Any:
    from aws_cdk import App, assertions
    from qa_stack import STAGE

    from infra import names
    from infra import stack as infra_stack

    stack = infra_stack.TreadleStack(App(), names.stack_name(STAGE), stage=STAGE)
    return assertions.Template.from_stack(stack)


@pytest.fixture(scope="session")
def template(assertion: Any) -> dict[str, Any]:
    from cfn_helpers import render

    rendered: dict[str, Any] = render(assertion.to_json())
    return rendered


@pytest.fixture(scope="session")
def facets_assertion() -> Any:
    from aws_cdk import App, assertions
    from qa_stack import STAGE

    from infra import names
    from infra import stack as infra_stack

    stack = infra_stack.TreadleStack(App(), names.stack_name(STAGE), stage=STAGE, facets=True)
    return assertions.Template.from_stack(stack)


@pytest.fixture(scope="session")
def facets_template(facets_assertion: Any) -> dict[str, Any]:
    from cfn_helpers import render

    rendered: dict[str, Any] = render(facets_assertion.to_json())
    return rendered
