"""Helpers to read a synthesised CloudFormation template in tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Json = dict[str, Any]


def render(value: Any) -> Any:
    """Intrinsics as readable strings: Ref -> ${X}, GetAtt -> ${X.Attr}, Join -> joined text."""
    if isinstance(value, list):
        return [render(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return "${" + value["Ref"] + "}"
        if set(value) == {"Fn::GetAtt"}:
            return "${" + ".".join(value["Fn::GetAtt"]) + "}"
        if set(value) == {"Fn::Join"}:
            separator, parts = value["Fn::Join"]
            return separator.join(str(render(p)) for p in parts)
        return {k: render(v) for k, v in value.items()}
    return value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resources(template: Json, type_: str) -> dict[str, Json]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def one(template: Json, type_: str, **properties: Any) -> tuple[str, Json]:
    """The only resource of this type whose properties include these values."""
    found = [
        (k, v)
        for k, v in resources(template, type_).items()
        if all(v["Properties"].get(p) == want for p, want in properties.items())
    ]
    assert len(found) == 1, f"expected one {type_} with {properties}, found {len(found)}"
    return found[0]


def function_by_name(template: Json, name: str) -> tuple[str, Json]:
    return one(template, "AWS::Lambda::Function", FunctionName=name)


def ref_id(rendered: str) -> str:
    """`${Logical}` or `${Logical.Attr}` -> `Logical`."""
    assert rendered.startswith("${") and rendered.endswith("}"), rendered
    return rendered[2:-1].split(".")[0]


def role_of(function: Json) -> str:
    return ref_id(function["Properties"]["Role"])


def policy_documents(template: Json) -> Iterator[tuple[str, Json]]:
    """Every policy document in the template: identity and resource policies alike."""
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("PolicyDocument", "AssumeRolePolicyDocument"):
            if key in props:
                yield f"{logical_id}.{key}", props[key]
        for inline in props.get("Policies", []) or []:
            yield f"{logical_id}.Policies", inline["PolicyDocument"]


def statements_of_role(template: Json, role_id: str) -> list[Json]:
    """Statements reaching a role: inline, AWS::IAM::Policy and managed policies.

    `template` is rendered (see `render`).
    """
    role = template["Resources"][role_id]
    statements: list[Json] = []
    for inline in role["Properties"].get("Policies", []) or []:
        statements += inline["PolicyDocument"]["Statement"]
    for managed in role["Properties"].get("ManagedPolicyArns", []) or []:
        policy = template["Resources"][ref_id(managed)]
        statements += policy["Properties"]["PolicyDocument"]["Statement"]
    for resource in template["Resources"].values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            attached = resource["Properties"].get("Roles", [])
            if f"${{{role_id}}}" in attached:
                statements += resource["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions(statements: list[Json]) -> set[str]:
    return {a for s in statements for a in as_list(s["Action"])}
