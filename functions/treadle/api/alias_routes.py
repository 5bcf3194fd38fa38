"""Lambda's alias API (CreateAlias, GetAlias, ListAliases, UpdateAlias, DeleteAlias)."""

from __future__ import annotations

from typing import Any

from treadle.api.http import Request, Response, Router
from treadle.app.aliases import AliasService, CreateAliasRequest, UpdateAliasRequest
from treadle.app.executions import parse_function_ref
from treadle.domain.errors import InvalidParameter
from treadle.domain.ports import Alias

A = "/2015-03-31/functions/{Name}/aliases"


def alias_json(alias: Alias) -> dict[str, Any]:
    return {
        "AliasArn": alias.alias_arn,
        "Name": alias.name,
        "FunctionVersion": alias.function_version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    }


class AliasApi:
    def __init__(self, aliases: AliasService) -> None:
        self.aliases = aliases

    def register(self, r: Router) -> None:
        r.add("POST", A, self.create)
        r.add("GET", A, self.list)
        r.add("GET", A + "/{Alias}", self.get)
        r.add("PUT", A + "/{Alias}", self.update)
        r.add("DELETE", A + "/{Alias}", self.delete)

    @staticmethod
    def _function(req: Request) -> str:
        # An alias belongs to the function itself: a qualified name is not one.
        name, qualifier = parse_function_ref(req.tenant, req.params["Name"], None)
        if qualifier is not None:
            raise InvalidParameter("An alias is created on an unqualified function name or ARN.")
        return name

    def create(self, req: Request) -> Response:
        body = CreateAliasRequest.model_validate(req.json())
        alias = self.aliases.create(req.tenant, self._function(req), body)
        return Response.json(alias_json(alias), status=201)

    def get(self, req: Request) -> Response:
        alias = self.aliases.get(req.tenant, self._function(req), req.params["Alias"])
        return Response.json(alias_json(alias))

    def list(self, req: Request) -> Response:
        raw = req.q("MaxItems")
        try:
            limit = int(raw) if raw else 50
        except ValueError:
            raise InvalidParameter(f"Invalid integer {raw!r}.") from None
        if not 1 <= limit <= 10000:
            raise InvalidParameter("MaxItems must be between 1 and 10000.")
        items, marker = self.aliases.list(
            req.tenant, self._function(req), req.q("FunctionVersion"), req.q("Marker"), limit
        )
        out: dict[str, Any] = {"Aliases": [alias_json(a) for a in items]}
        if marker:
            out["NextMarker"] = marker
        return Response.json(out)

    def update(self, req: Request) -> Response:
        body = UpdateAliasRequest.model_validate(req.json())
        alias = self.aliases.update(req.tenant, self._function(req), req.params["Alias"], body)
        return Response.json(alias_json(alias))

    def delete(self, req: Request) -> Response:
        self.aliases.delete(req.tenant, self._function(req), req.params["Alias"])
        return Response(status=204)
