"""Alias use cases (Lambda's CreateAlias ... DeleteAlias) and qualifier resolution.

A qualifier names $LATEST, a published version (digits) or an alias (anything else
Lambda's alias pattern allows); `resolve` turns any of them into the version it means
now. An execution started through an alias pins that version (its ARN carries it), so
repointing the alias later does not change what a running execution replays.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from treadle.domain.errors import InvalidParameter, NotFound, PreconditionFailed, ValidationFailed
from treadle.domain.ports import Alias, AliasStore, FunctionStore, FunctionVersion, Ids

LATEST = "$LATEST"
# botocore's model of the Lambda API: the patterns its service validates.
ALIAS_PATTERN = r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)"
VERSION_PATTERN = r"(\$LATEST|[0-9]+)"
_ALIAS = re.compile(r"(?!^[0-9]+$)[a-zA-Z0-9\-_]{1,128}")
_VERSION = re.compile(r"\$LATEST|[0-9]{1,1024}")
REVISION_MOVED = (
    "The Revision Id provided does not match the latest Revision Id. "
    "Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
)


def _pattern_error(value: str, where: str, pattern: str) -> ValidationFailed:
    return ValidationFailed(
        f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {pattern}"
    )


def check_alias_name(name: str, where: str = "name") -> str:
    if not _ALIAS.fullmatch(name):
        raise _pattern_error(name, where, ALIAS_PATTERN)
    return name


def check_version(version: str, where: str = "functionVersion") -> str:
    if not _VERSION.fullmatch(version):
        raise _pattern_error(version, where, VERSION_PATTERN)
    # "01" is not a version Lambda hands out; the stores key versions by their number.
    if version != LATEST and version != str(int(version)):
        raise NotFound(f"Function version {version} not found.")
    return version


def is_version(qualifier: str) -> bool:
    return qualifier == LATEST or qualifier.isdigit()


def resolve(
    functions: FunctionStore,
    aliases: AliasStore | None,
    tenant: str,
    name: str,
    qualifier: str | None,
) -> FunctionVersion:
    """The version a qualifier names now: itself, or the one its alias points to."""
    if qualifier is None or is_version(qualifier):
        return functions.get(tenant, name, qualifier or LATEST)
    if aliases is None or not _ALIAS.fullmatch(qualifier):
        raise NotFound(f"Function not found: {name}:{qualifier}")
    try:
        alias = aliases.get_alias(tenant, name, qualifier)
    except NotFound:
        raise NotFound(f"Function not found: {name}:{qualifier}") from None
    return functions.get(tenant, name, alias.function_version)


class AliasRouting(BaseModel):
    model_config = ConfigDict(extra="ignore")
    AdditionalVersionWeights: dict[str, float] = Field(default_factory=dict)


class CreateAliasRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    Name: str
    FunctionVersion: str
    Description: str = Field(default="", max_length=256)
    RoutingConfig: AliasRouting | None = None


class UpdateAliasRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    FunctionVersion: str | None = None
    Description: str | None = Field(default=None, max_length=256)
    RoutingConfig: AliasRouting | None = None
    RevisionId: str | None = None


def _refuse_routing(routing: AliasRouting | None) -> None:
    # A weighted second version is not implemented: say so rather than ignore it.
    if routing is not None and routing.AdditionalVersionWeights:
        raise InvalidParameter(
            "RoutingConfig.AdditionalVersionWeights is not supported by Treadle: "
            "an alias points to exactly one version."
        )


class AliasService:
    def __init__(self, *, store: AliasStore, functions: FunctionStore, ids: Ids) -> None:
        self.store = store
        self.functions = functions
        self.ids = ids

    def create(self, tenant: str, function_name: str, req: CreateAliasRequest) -> Alias:
        name = check_alias_name(req.Name)
        version = check_version(req.FunctionVersion)
        _refuse_routing(req.RoutingConfig)
        latest = self.functions.get(tenant, function_name)
        alias = Alias(
            tenant=tenant,
            function_name=function_name,
            name=name,
            function_arn=latest.function_arn,
            function_version=version,
            description=req.Description,
            revision_id=self.ids.revision_id(),
        )
        self.store.create_alias(alias)
        return alias

    def get(self, tenant: str, function_name: str, name: str) -> Alias:
        return self.store.get_alias(tenant, function_name, check_alias_name(name))

    def list(
        self,
        tenant: str,
        function_name: str,
        version: str | None,
        marker: str | None,
        limit: int,
    ) -> tuple[list[Alias], str | None]:
        if version is not None:
            check_version(version)
        if marker is not None and marker != "":
            check_alias_name(marker, "marker")
        return self.store.list_aliases(tenant, function_name, version, marker or None, limit)

    def update(self, tenant: str, function_name: str, name: str, req: UpdateAliasRequest) -> Alias:
        current = self.get(tenant, function_name, name)
        if req.RevisionId is not None and req.RevisionId != current.revision_id:
            raise PreconditionFailed(REVISION_MOVED)
        _refuse_routing(req.RoutingConfig)
        changes: dict[str, Any] = {"revision_id": self.ids.revision_id()}
        if req.FunctionVersion is not None:
            changes["function_version"] = check_version(req.FunctionVersion)
        if req.Description is not None:
            changes["description"] = req.Description
        updated = current.model_copy(update=changes)
        self.store.update_alias(updated, current.revision_id)
        return updated

    def delete(self, tenant: str, function_name: str, name: str) -> None:
        self.store.delete_alias(tenant, function_name, check_alias_name(name))
