"""Aliases and UpdateFunctionConfiguration on the wire, with boto3, as on Lambda.

An alias names a version; invoking through it runs that version (a durable execution
pins it: its ARN and X-Amz-Executed-Version carry the number), repointing it changes
what the next invoke runs. UpdateFunctionConfiguration changes $LATEST only, and the
next invoke runs with the new configuration (no warm worker of the old one is reused).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.server import ServerProcess, client, deploy, v1, zip_files

SAYS = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution

@durable_execution
def handler(event, context: DurableContext):
    return context.step(lambda _: "{word}", name="say")
"""

ENV = """
import os

def handler(event, context):
    return {"x": os.environ.get("X"), "memory": context.memory_limit_in_mb}
"""


def _code(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as exc:
        call()
    return str(exc.value.response["Error"]["Code"])


def _two_versions(lam: Any, name: str) -> str:
    """A durable function whose version 1 says "one" and version 2 says "two"."""
    arn = deploy(lam, name, {"handler.py": SAYS.format(word="one")}, Publish=True)["FunctionArn"]
    lam.update_function_code(
        FunctionName=name, ZipFile=zip_files({"handler.py": SAYS.format(word="two")}), Publish=True
    )
    return str(arn)


def test_alias_lifecycle_and_its_errors(lam: Any) -> None:
    arn = _two_versions(lam, "aliased")
    made = lam.create_alias(
        FunctionName="aliased", Name="prod", FunctionVersion="1", Description="live"
    )
    assert made["AliasArn"] == f"{arn}:prod"
    assert (made["Name"], made["FunctionVersion"], made["Description"]) == ("prod", "1", "live")
    got = lam.get_alias(FunctionName=arn, Name="prod")
    assert {k: v for k, v in got.items() if k != "ResponseMetadata"} == {
        k: v for k, v in made.items() if k != "ResponseMetadata"
    }
    for name in ("a", "b", "c", "d"):
        lam.create_alias(FunctionName="aliased", Name=name, FunctionVersion="$LATEST")
    first = lam.list_aliases(FunctionName="aliased", MaxItems=3)
    rest = lam.list_aliases(FunctionName="aliased", Marker=first["NextMarker"])
    assert [a["Name"] for a in first["Aliases"] + rest["Aliases"]] == ["a", "b", "c", "d", "prod"]
    assert "NextMarker" not in rest
    ones = lam.list_aliases(FunctionName="aliased", FunctionVersion="1")["Aliases"]
    assert [a["Name"] for a in ones] == ["prod"]

    moved = lam.update_alias(FunctionName="aliased", Name="prod", FunctionVersion="2")
    assert moved["FunctionVersion"] == "2" and moved["Description"] == "live"
    assert moved["RevisionId"] != made["RevisionId"]
    stale = _code(
        lambda: lam.update_alias(
            FunctionName="aliased", Name="prod", FunctionVersion="1", RevisionId=made["RevisionId"]
        )
    )
    assert stale == "PreconditionFailedException"
    assert lam.get_alias(FunctionName="aliased", Name="prod")["FunctionVersion"] == "2"

    def create(**kw: Any) -> Callable[[], Any]:
        return lambda: lam.create_alias(FunctionName="aliased", **{"FunctionVersion": "1", **kw})

    assert _code(create(Name="prod")) == "ResourceConflictException"
    assert _code(create(Name="123")) == "ValidationException"  # digits name a version
    assert _code(create(Name="$LATEST")) == "ValidationException"
    assert _code(create(Name="x", FunctionVersion="9")) == "ResourceNotFoundException"
    weighted = create(Name="w", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    assert _code(weighted) == "InvalidParameterValueException"
    assert _code(lambda: lam.create_alias(FunctionName="nope", Name="p", FunctionVersion="1")) == (
        "ResourceNotFoundException"
    )
    assert _code(lambda: lam.get_alias(FunctionName="aliased", Name="gone")) == (
        "ResourceNotFoundException"
    )
    assert _code(lambda: lam.delete_alias(FunctionName="aliased", Name="gone")) == (
        "ResourceNotFoundException"
    )
    # A version an alias points to stays.
    assert _code(lambda: lam.delete_function(FunctionName="aliased", Qualifier="2")) == (
        "ResourceConflictException"
    )
    lam.delete_alias(FunctionName="aliased", Name="prod")
    assert _code(lambda: lam.get_alias(FunctionName="aliased", Name="prod")) == (
        "ResourceNotFoundException"
    )
    lam.delete_function(FunctionName="aliased", Qualifier="2")
    # Deleting the function takes its aliases with it.
    lam.delete_function(FunctionName="aliased")
    deploy(lam, "aliased", {"handler.py": SAYS.format(word="again")})
    assert lam.list_aliases(FunctionName="aliased")["Aliases"] == []


def test_invoke_by_alias_runs_the_version_it_points_to(lam: Any) -> None:
    arn = _two_versions(lam, "pinned")
    alias_arn = lam.create_alias(FunctionName="pinned", Name="prod", FunctionVersion="1")[
        "AliasArn"
    ]

    def invoke(**kw: Any) -> tuple[Any, str, str]:
        resp = lam.invoke(Payload=b"{}", **kw)
        headers = resp["ResponseMetadata"]["HTTPHeaders"]
        return (
            json.loads(resp["Payload"].read()),
            resp["ExecutedVersion"],
            headers["x-amz-durable-execution-arn"],
        )

    result, version, execution = invoke(FunctionName="pinned:prod")
    assert (result, version) == ("one", "1")
    assert execution.startswith(f"{arn}:1/durable-execution/")
    assert lam.get_durable_execution(DurableExecutionArn=execution)["Version"] == "1"
    lam.update_alias(FunctionName="pinned", Name="prod", FunctionVersion="2")
    assert invoke(FunctionName="pinned", Qualifier="prod")[:2] == ("two", "2")
    assert invoke(FunctionName=alias_arn)[:2] == ("two", "2")
    config = lam.get_function_configuration(FunctionName="pinned", Qualifier="prod")
    assert config["Version"] == "2"
    assert lam.get_function(FunctionName=alias_arn)["Configuration"]["Version"] == "2"
    assert _code(lambda: lam.invoke(FunctionName="pinned:nope", Payload=b"{}")) == (
        "ResourceNotFoundException"
    )
    assert _code(lambda: lam.get_function(FunctionName="pinned", Qualifier="nope")) == (
        "ResourceNotFoundException"
    )


def test_update_function_configuration_changes_latest_only(lam: Any) -> None:
    before = deploy(lam, "configured", {"handler.py": ENV}, durable=False, memory=256, Publish=True)
    assert json.loads(lam.invoke(FunctionName="configured")["Payload"].read())["x"] is None
    after = lam.update_function_configuration(
        FunctionName="configured",
        Environment={"Variables": {"X": "new"}},
        MemorySize=512,
        Timeout=30,
        Description="changed",
        RevisionId=before["RevisionId"],
    )
    assert (after["MemorySize"], after["Timeout"], after["Description"]) == (512, 30, "changed")
    assert after["Environment"] == {"Variables": {"X": "new"}}
    assert after["Version"] == "$LATEST" and after["RevisionId"] != before["RevisionId"]
    assert (
        lam.get_function_configuration(FunctionName="configured")["RevisionId"]
        == (after["RevisionId"])
    )
    # The warm worker of the old configuration is not reused.
    out = json.loads(lam.invoke(FunctionName="configured")["Payload"].read())
    assert out == {"x": "new", "memory": "512"} or out == {"x": "new", "memory": 512}
    # Version 1 is immutable.
    v1 = lam.get_function_configuration(FunctionName="configured", Qualifier="1")
    assert v1["MemorySize"] == 256 and "Environment" not in v1
    assert json.loads(lam.invoke(FunctionName="configured:1")["Payload"].read())["x"] is None

    def update(**kw: Any) -> Callable[[], Any]:
        return lambda: lam.update_function_configuration(FunctionName="configured", **kw)

    assert _code(update(Timeout=30, RevisionId=before["RevisionId"])) == (
        "PreconditionFailedException"
    )
    assert _code(update(Timeout=901)) == "InvalidParameterValueException"
    assert _code(update(Runtime="nodejs20.x")) == "InvalidParameterValueException"
    assert _code(update(Handler="has space")) == "InvalidParameterValueException"
    assert (
        _code(lambda: lam.update_function_configuration(FunctionName="configured:1", Timeout=5))
        == "InvalidParameterValueException"
    )
    assert _code(lambda: lam.update_function_configuration(FunctionName="nope", Timeout=5)) == (
        "ResourceNotFoundException"
    )
    unchanged = lam.get_function_configuration(FunctionName="configured")
    assert unchanged["RevisionId"] == after["RevisionId"] and unchanged["Timeout"] == 30
    durable = lam.update_function_configuration(
        FunctionName="configured", DurableConfig={"ExecutionTimeout": 600}
    )
    assert durable["DurableConfig"]["ExecutionTimeout"] == 600


def test_another_tenant_reaches_no_alias(server: ServerProcess, lam: Any) -> None:
    _two_versions(lam, "guarded")
    made = lam.create_alias(FunctionName="guarded", Name="prod", FunctionVersion="1")
    admin = server.credentials("treadle-admin")
    status, body = v1(server, "POST", "/v1/tenants", {"name": "alias-b"}, credentials=admin)
    assert status == 201
    b = client(
        server,
        credentials=(body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"]),
    )
    alias_arn = made["AliasArn"]
    fn_arn = alias_arn.rsplit(":", 1)[0]
    for call in (
        lambda: b.get_alias(FunctionName=fn_arn, Name="prod"),
        lambda: b.list_aliases(FunctionName=fn_arn),
        lambda: b.update_alias(FunctionName=fn_arn, Name="prod", FunctionVersion="2"),
        lambda: b.delete_alias(FunctionName=fn_arn, Name="prod"),
        lambda: b.create_alias(FunctionName=fn_arn, Name="mine", FunctionVersion="1"),
        lambda: b.invoke(FunctionName=alias_arn, Payload=b"{}"),
        lambda: b.get_function(FunctionName=alias_arn),
        lambda: b.update_function_configuration(FunctionName=fn_arn, Timeout=9),
    ):
        assert _code(call) == "ResourceNotFoundException"
    assert lam.get_alias(FunctionName="guarded", Name="prod")["RevisionId"] == made["RevisionId"]
    assert [a["Name"] for a in lam.list_aliases(FunctionName="guarded")["Aliases"]] == ["prod"]
    assert lam.get_function_configuration(FunctionName="guarded")["Timeout"] == 60
