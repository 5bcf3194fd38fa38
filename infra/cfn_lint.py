"""`make cfn-lint`: synthesise the stack in-process and run cfn-lint on its template.

Run from the repo root: `.venv/bin/python -m infra.cfn_lint [--stage STAGE]`. No CDK CLI
and no `cdk.out`: the stack is built as the tests build it (jsii runs the CDK in node),
so this takes seconds. Both variants are checked: the default stack and the one with
facets on AWS (`-c treadle:facets=true`: VPC, NAT, EFS). tests/infra runs the same check
on its own syntheses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

# Regions whose resource specifications the template is checked against.
REGIONS = ("us-east-1", "eu-west-1")
# W3005 ("DependsOn already enforced by GetAtt") is how CDK orders a function after its
# role's policy; it is redundant, not wrong.
IGNORED_RULES = frozenset({"W3005"})


def lint_template(template: Mapping[str, Any]) -> list[str]:
    """cfn-lint's findings on a template, one line each, the ignored rules left out."""
    from cfnlint.api import ManualArgs, lint  # type: ignore[import-untyped]

    matches = lint(json.dumps(template), config=ManualArgs(regions=list(REGIONS)))
    return [str(m) for m in matches if m.rule.id not in IGNORED_RULES]


def synthesise(stage: str, *, facets: bool = False) -> dict[str, Any]:
    from aws_cdk import App, assertions

    from infra import names
    from infra.stack import TreadleStack

    stack = TreadleStack(App(), names.stack_name(stage), stage=stage, facets=facets)
    return dict(assertions.Template.from_stack(stack).to_json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    stage = parser.parse_args().stage
    # jsii's banner about the node version would bury the findings.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    failed = []
    for facets in (False, True):
        variant = f"the {stage} stack" + (" with facets" if facets else "")
        problems = lint_template(synthesise(stage, facets=facets))
        for problem in problems:
            print(f"{variant}: {problem}")
        if problems:
            failed.append(f"{len(problems)} finding(s) on {variant}")
        else:
            print(f"cfn-lint: {variant}: template clean")
    if failed:
        sys.exit("cfn-lint: " + "; ".join(failed))


if __name__ == "__main__":
    main()
