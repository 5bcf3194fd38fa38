"""The durable channel: the SDK's data-plane calls arriving from sandbox workers.

It is a second door to the same two operations as the HTTP routes
(CheckpointDurableExecution, GetDurableExecutionState), with the same validation and
the same AWS error codes, minus HTTP. The worker's runtime presents the answers to the
SDK in boto3's shapes.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from treadle.api.errors import lambda_error
from treadle.domain.engine import Engine
from treadle.domain.errors import InvalidParameter
from treadle.domain.models import CheckpointRequest, Operation
from treadle.facets import Facets
from treadle.observability.tracing import checkpoint_span


class DurableChannel:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __call__(self, op: str, body: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            params = json.loads(body)
            arn = params.pop("DurableExecutionArn")
            if op == "checkpoint":
                request = CheckpointRequest.model_validate(params)
                with checkpoint_span(arn, len(request.Updates)):
                    result = self._engine.checkpoint(arn, request)
                out = b'{"NewExecutionState":{"Operations":%s}' % _ops_json(result.Operations)
                if result.CheckpointToken:
                    out += b',"CheckpointToken":' + json.dumps(result.CheckpointToken).encode()
            elif op == "state":
                ops, marker = self._engine.get_state(
                    arn, params["CheckpointToken"], params.get("Marker"), params.get("MaxItems")
                )
                out = b'{"Operations":' + _ops_json(ops)
                if marker:
                    out += b',"NextMarker":' + json.dumps(marker).encode()
            else:
                raise InvalidParameter(f"Unknown durable channel operation {op!r}.")
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            if isinstance(exc, ValidationError):
                return _error_of(exc)
            return _error_of(InvalidParameter(f"Malformed durable channel request: {exc}"))
        except Exception as exc:  # mapped exactly as the HTTP surface maps it
            return _error_of(exc)
        return {}, out + b"}"


# What `[o.wire() for o in ops]` and `json.dumps` give, written by pydantic's serializer
# at once: 11 -> 4 µs for a step's two operations, at every checkpoint.
_OPERATIONS = TypeAdapter(list[Operation])


def _ops_json(ops: list[Operation]) -> bytes:
    return _OPERATIONS.dump_json(ops, exclude_none=True)


def _error_of(exc: BaseException) -> tuple[dict[str, Any], bytes]:
    response = lambda_error(exc)
    body = json.loads(response.body)
    code = response.headers.get("x-amzn-errortype", "ServiceException")
    return {"error": {"code": code, "message": body["message"], "status": response.status}}, b""


class FacetChannel:
    """A worker asking to open one of its tenant's facets (`sandbox/facet_link.py`).

    The tenant is the one whose function the worker runs (the sandbox runtime passes
    it), never a value from the worker. Errors come back in the same shape as the
    durable channel's (AWS code, message, status).
    """

    def __init__(self, facets: Facets) -> None:
        self._facets = facets

    def __call__(self, tenant: str, body: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            name = json.loads(body)["name"]
            if not isinstance(name, str):
                raise InvalidParameter("A facet name is a string.")
            grant = self._facets.open(tenant, name)
        except (ValueError, KeyError, TypeError) as exc:
            return _error_of(InvalidParameter(f"Malformed facet request: {exc}"))
        except Exception as exc:
            return _error_of(exc)
        return {}, json.dumps({"name": grant.name, "maxBytes": grant.max_bytes}).encode()
