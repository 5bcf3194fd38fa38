"""The Lambda-compatible surface: function API, Invoke and the durable-execution API."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from treadle.api import serialize as s
from treadle.api.http import REQUEST_ID_HEADER, Request, Response, Router
from treadle.app.executions import ExecutionService, check_execution_arn, parse_function_ref
from treadle.app.functions import (
    CreateFunctionRequest,
    FunctionService,
    UpdateCodeRequest,
    UpdateConfigurationRequest,
)
from treadle.domain.errors import InvalidParameter
from treadle.domain.models import CheckpointRequest, ErrorObject, ExecutionStatus
from treadle.domain.ports import ExecutionQuery
from treadle.observability.tracing import checkpoint_span

F = "/2015-03-31/functions"
D = "/2025-12-01/durable-executions"


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidParameter(f"Invalid boolean {value!r}.")


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"Invalid integer {value!r}.") from None


def _timestamp_ms(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value) * 1000)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"Invalid timestamp {value!r}.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


class LambdaApi:
    def __init__(self, functions: FunctionService, executions: ExecutionService) -> None:
        self.functions = functions
        self.executions = executions
        self.engine = executions.engine

    def register(self, r: Router) -> None:
        r.add("POST", F, self.create_function)
        r.add("GET", F, self.list_functions)
        r.add("GET", F + "/{Name}", self.get_function)
        r.add("GET", F + "/{Name}/configuration", self.get_configuration)
        r.add("DELETE", F + "/{Name}", self.delete_function)
        r.add("PUT", F + "/{Name}/code", self.update_code)
        r.add("PUT", F + "/{Name}/configuration", self.update_configuration)
        r.add("POST", F + "/{Name}/versions", self.publish_version)
        r.add("GET", F + "/{Name}/versions", self.list_versions)
        r.add("POST", F + "/{Name}/invocations", self.invoke)
        r.add("GET", "/2025-12-01/functions/{Name}/durable-executions", self.list_executions)
        r.add("GET", D + "/{Arn}", self.get_execution)
        r.add("DELETE", D + "/{Arn}", self.delete_execution)
        r.add("GET", D + "/{Arn}/history", self.get_history)
        r.add("GET", D + "/{Arn}/state", self.get_state)
        r.add("POST", D + "/{Arn}/checkpoint", self.checkpoint)
        r.add("POST", D + "/{Arn}/stop", self.stop)
        r.add("POST", D + "/{Arn}/pause", self.pause)
        r.add("POST", D + "/{Arn}/resume", self.resume)
        cb = "/2025-12-01/durable-execution-callbacks/{CallbackId}"
        r.add("POST", cb + "/succeed", self.callback_succeed)
        r.add("POST", cb + "/fail", self.callback_fail)
        r.add("POST", cb + "/heartbeat", self.callback_heartbeat)

    # -- functions -----------------------------------------------------------------

    def create_function(self, req: Request) -> Response:
        body = CreateFunctionRequest.model_validate(req.json())
        fn = self.functions.create(req.tenant, body)
        return Response.json(s.function_configuration(fn), status=201)

    def list_functions(self, req: Request) -> Response:
        limit = _int(req.q("MaxItems")) or 50
        if not 1 <= limit <= 10000:
            raise InvalidParameter("MaxItems must be between 1 and 10000.")
        items, marker = self.functions.list_functions(req.tenant, req.q("Marker"), limit)
        out: dict[str, Any] = {"Functions": [s.function_configuration(f) for f in items]}
        if marker:
            out["NextMarker"] = marker
        return Response.json(out)

    def _name(self, req: Request) -> tuple[str, str | None]:
        return parse_function_ref(req.tenant, req.params["Name"], req.q("Qualifier"))

    def get_function(self, req: Request) -> Response:
        name, qualifier = self._name(req)
        fn = self.functions.get(req.tenant, name, qualifier)
        return Response.json(
            {
                "Configuration": s.function_configuration(fn),
                "Code": {"RepositoryType": "S3", "Location": f"treadle://code/{fn.code_key}"},
                "Tags": s.code_delivery_tags(fn),
                "Treadle": s.code_delivery(fn),
            }
        )

    def get_configuration(self, req: Request) -> Response:
        name, qualifier = self._name(req)
        return Response.json(
            s.function_configuration(self.functions.get(req.tenant, name, qualifier))
        )

    def delete_function(self, req: Request) -> Response:
        name, qualifier = self._name(req)
        self.functions.delete(req.tenant, name, qualifier)
        return Response(status=204)

    def update_code(self, req: Request) -> Response:
        name, _ = self._name(req)
        fn = self.functions.update_code(
            req.tenant, name, UpdateCodeRequest.model_validate(req.json())
        )
        return Response.json(s.function_configuration(fn))

    def update_configuration(self, req: Request) -> Response:
        name, qualifier = self._name(req)
        if qualifier is not None:  # only $LATEST changes; versions are immutable
            raise InvalidParameter("Only the unqualified function's configuration can change.")
        body = UpdateConfigurationRequest.model_validate(req.json())
        return Response.json(
            s.function_configuration(self.functions.update_configuration(req.tenant, name, body))
        )

    def publish_version(self, req: Request) -> Response:
        name, _ = self._name(req)
        description = req.json().get("Description")
        fn = self.functions.publish(req.tenant, name, description)
        return Response.json(s.function_configuration(fn), status=201)

    def list_versions(self, req: Request) -> Response:
        name, _ = self._name(req)
        limit = _int(req.q("MaxItems")) or 50
        items, marker = self.functions.versions(req.tenant, name, req.q("Marker"), limit)
        out: dict[str, Any] = {"Versions": [s.function_configuration(f) for f in items]}
        if marker:
            out["NextMarker"] = marker
        return Response.json(out)

    def invoke(self, req: Request) -> Response:
        result = self.executions.invoke(
            req.tenant,
            req.params["Name"],
            req.q("Qualifier"),
            req.body,
            req.header("x-amz-invocation-type") or "RequestResponse",
            req.header("x-amz-durable-execution-name"),
        )
        headers = {"x-amz-executed-version": result.executed_version}
        if result.execution_arn:
            headers["x-amz-durable-execution-arn"] = result.execution_arn
        if result.function_error:
            headers["x-amz-function-error"] = result.function_error
        if result.request_id:
            headers[REQUEST_ID_HEADER] = result.request_id
        headers["content-type"] = "application/json"
        return Response(status=result.status_code, body=result.payload, headers=headers)

    # -- durable executions ----------------------------------------------------------

    def _arn(self, req: Request) -> str:
        return check_execution_arn(req.tenant, req.params["Arn"])

    def list_executions(self, req: Request) -> Response:
        statuses = req.query.get("Statuses")
        try:
            status_set = frozenset(ExecutionStatus(v) for v in statuses) if statuses else None
        except ValueError:
            raise InvalidParameter(f"Invalid status in {statuses}.") from None
        limit = _int(req.q("MaxItems")) or 100
        if not 1 <= limit <= 1000:
            raise InvalidParameter("MaxItems must be between 0 and 1000.")
        query = ExecutionQuery(
            statuses=status_set,
            name=req.q("DurableExecutionName"),
            version=req.q("Qualifier"),
            started_after_ms=_timestamp_ms(req.q("StartedAfter")),
            started_before_ms=_timestamp_ms(req.q("StartedBefore")),
            reverse=bool(_bool(req.q("ReverseOrder"))),
            marker=req.q("Marker"),
            limit=limit,
        )
        items, marker = self.executions.list_by_function(req.tenant, req.params["Name"], query)
        out: dict[str, Any] = {"DurableExecutions": [s.execution_summary(e) for e in items]}
        if marker:
            out["NextMarker"] = marker
        return Response.json(out)

    def get_execution(self, req: Request) -> Response:
        include = _bool(req.q("IncludeExecutionData"))
        ex = self.executions.get(req.tenant, req.params["Arn"])
        return Response.json(s.execution_detail(ex, include_data=include is not False))

    def delete_execution(self, req: Request) -> Response:
        when = self.engine.delete(self._arn(req))
        return Response.json({"DeletionRequestTimestamp": when / 1000}, status=202)

    def get_history(self, req: Request) -> Response:
        include = _bool(req.q("IncludeExecutionData")) is not False
        events, marker = self.executions.history(
            req.tenant,
            req.params["Arn"],
            marker=req.q("Marker"),
            max_items=_int(req.q("MaxItems")),
            reverse=bool(_bool(req.q("ReverseOrder"))),
        )
        out: dict[str, Any] = {"Events": [s.event(e, include) for e in events]}
        if marker:
            out["NextMarker"] = marker
        return Response.json(out)

    def get_state(self, req: Request) -> Response:
        token = req.q("CheckpointToken")
        if not token:
            raise InvalidParameter("CheckpointToken is required.")
        ops, marker = self.engine.get_state(
            self._arn(req), token, req.q("Marker"), _int(req.q("MaxItems"))
        )
        out: dict[str, Any] = {"Operations": [s.operation(o) for o in ops]}
        if marker:
            out["NextMarker"] = marker
        return Response.json(out)

    def checkpoint(self, req: Request) -> Response:
        body = CheckpointRequest.model_validate(req.json())
        arn = self._arn(req)
        with checkpoint_span(arn, len(body.Updates)):
            result = self.engine.checkpoint(arn, body)
        out: dict[str, Any] = {
            "NewExecutionState": {"Operations": [s.operation(o) for o in result.Operations]}
        }
        if result.CheckpointToken:
            out["CheckpointToken"] = result.CheckpointToken
        return Response.json(out)

    def stop(self, req: Request) -> Response:
        raw = req.json()
        error = ErrorObject.model_validate(raw) if raw else None
        when = self.engine.stop(self._arn(req), error)
        return Response.json({"StopTimestamp": when / 1000})

    def pause(self, req: Request) -> Response:
        body = req.json()
        self.engine.pause(
            self._arn(req), body.get("Reason"), bool(body.get("ExecutionTimeoutPaused", False))
        )
        return Response.json({}, status=202)

    def resume(self, req: Request) -> Response:
        self.engine.resume(self._arn(req), req.json().get("Reason"))
        return Response.json({}, status=202)

    # -- callbacks -----------------------------------------------------------------

    def callback_succeed(self, req: Request) -> Response:
        # The body is the raw result (a blob); keep it as text, as the SDK reads it.
        try:
            result = req.body.decode("utf-8")
        except UnicodeDecodeError:
            result = base64.b64encode(req.body).decode()
        self.engine.complete_callback(req.tenant, req.params["CallbackId"], result=result)
        return Response.json({})

    def callback_fail(self, req: Request) -> Response:
        raw = req.json()
        error = ErrorObject.model_validate(raw) if raw else ErrorObject()
        self.engine.complete_callback(req.tenant, req.params["CallbackId"], error=error)
        return Response.json({})

    def callback_heartbeat(self, req: Request) -> Response:
        self.engine.heartbeat_callback(req.tenant, req.params["CallbackId"])
        return Response.json({})
