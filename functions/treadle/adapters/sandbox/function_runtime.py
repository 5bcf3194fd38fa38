"""FunctionRuntime adapter: runs a function version in the local sandbox.

Maps a FunctionVersion onto the sandbox's process model, gives the handler the
platform endpoint (so the unmodified SDK checkpoints to us), and ships each
invocation's log lines to the log store under `/aws/lambda/<function>`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from treadle.adapters.sandbox import facet_link
from treadle.adapters.sandbox.handle import CallHandler
from treadle.adapters.sandbox.sandbox import LocalSandbox
from treadle.adapters.sandbox.spec import InvocationOutcome as SandboxOutcome
from treadle.adapters.sandbox.spec import SandboxFunction
from treadle.domain.logs import LogStore
from treadle.domain.ports import FunctionVersion, InvocationOutcome
from treadle.observability.trace_context import current_trace_header

log = logging.getLogger(__name__)

# (tenant, body) -> (reply header, reply body): a call answered for the worker's tenant.
TenantCallHandler = Callable[[str, bytes], tuple[dict[str, Any], bytes]]


def report_line(fn: FunctionVersion, outcome: SandboxOutcome) -> str:
    """Lambda's REPORT line: duration, billed duration (whole ms), memory, Init phase."""
    duration_ms = (outcome.ended_at - outcome.started_at) * 1000
    fields = [
        f"REPORT RequestId: {outcome.request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {math.ceil(duration_ms)} ms",
        f"Memory Size: {fn.memory_mb} MB",
        f"Max Memory Used: {math.ceil(outcome.max_memory_kb / 1024)} MB",
    ]
    if outcome.init_ms is not None:
        fields.append(f"Init Duration: {outcome.init_ms:.2f} ms")
    return "\t".join(fields)


class UnpackedCode(Protocol):
    """Code packages as directories (LocalCodeStore, or S3CodeStore's local cache)."""

    def unpacked(self, key: str, tenant: str, *, group: int | None = None) -> Path: ...


class SandboxRuntime:
    def __init__(
        self,
        *,
        sandbox: LocalSandbox,
        code: UnpackedCode,
        logs: LogStore,
        platform_env: Mapping[str, str],
        tenant_env: Callable[[str], Mapping[str, str]] | None = None,
        init_ahead: bool = True,
    ) -> None:
        self._sandbox = sandbox
        self._code = code
        self._logs = logs
        self._platform_env = dict(platform_env)
        # Per tenant: the credentials its code signs with (its "execution role").
        self._tenant_env = tenant_env
        self._init_ahead = init_ahead
        self._on_call: CallHandler | None = None
        self._facet_calls: TenantCallHandler | None = None

    def serve_durable_calls(self, on_call: CallHandler) -> None:
        """Answer the SDK's checkpoints from workers in-process (see durable_channel)."""
        self._on_call = on_call

    def serve_facet_calls(self, on_call: TenantCallHandler) -> None:
        """Answer workers' `facet.open` calls (`facet_link`), for their own tenant."""
        self._facet_calls = on_call

    def _calls(self, tenant: str) -> CallHandler | None:
        durable, facets = self._on_call, self._facet_calls
        if facets is None:
            return durable

        def on_call(op: str, body: bytes) -> tuple[dict[str, Any], bytes]:
            # The tenant is the function's, never anything the worker says.
            if op == facet_link.OP:
                return facets(tenant, body)
            if durable is None:
                message = f"No handler for worker call {op!r}."
                return {
                    "error": {"code": "ServiceException", "message": message, "status": 500}
                }, b""
            return durable(op, body)

        return on_call

    def _spec(self, fn: FunctionVersion) -> SandboxFunction:
        env = {**fn.environment, **self._platform_env}
        if self._tenant_env is not None:
            env.update(self._tenant_env(fn.tenant))
        endpoint = self._sandbox.tenant_endpoint(fn.tenant)
        if endpoint is not None:
            # In its own network namespace the public endpoint is out of reach.
            env["AWS_ENDPOINT_URL_LAMBDA"] = endpoint
        # The tenant's own copy of the code, readable by the gid its workers run with.
        code_dir = self._code.unpacked(
            fn.code_key, fn.tenant, group=self._sandbox.tenant_group(fn.tenant)
        )
        return SandboxFunction(
            key=f"{fn.tenant}/{fn.function_name}/{fn.version}/{fn.code_key}/{fn.revision_id}",
            code_dir=code_dir,
            handler=fn.handler,
            function_name=fn.function_name,
            function_version=fn.version,
            invoked_function_arn=fn.qualified_arn,
            memory_mb=fn.memory_mb,
            timeout_s=float(fn.timeout_s),
            environment=env,
            log_group=f"/aws/lambda/{fn.function_name}",
            tenant=fn.tenant,
            ephemeral_storage_mb=fn.ephemeral_storage_mb,
        )

    def prepare(self, fn: FunctionVersion) -> None:
        """Ready new code ahead of its first invoke, as Lambda readies a function between
        CreateFunction and its first invoke (its state goes Pending -> Active).

        The tenant's copy of the code is unpacked and its network namespace made (in
        `_spec`); with `init_ahead`, the version's first worker starts from the tenant's
        confined spare and imports the handler now (`LocalSandbox.prepare`).
        """
        spec = self._spec(fn)
        if self._init_ahead and self._sandbox.prepare(spec):
            log.debug("%s:%s initialised ahead of its first invoke", fn.function_name, fn.version)

    def invoke(self, fn: FunctionVersion, payload: bytes, request_id: str) -> InvocationOutcome:
        outcome = self._sandbox.invoke(
            self._spec(fn),
            payload,
            request_id,
            self._calls(fn.tenant),
            trace_header=current_trace_header.get(),
        )
        stream = time.strftime("%Y/%m/%d", time.gmtime(outcome.started_at))
        stream = f"{stream}/[{fn.version}]{request_id.replace('-', '')}"
        started, ended = int(outcome.started_at * 1000), int(outcome.ended_at * 1000)
        # Lambda's own lines around the handler's: every invoked function has its group.
        lines = [(started, f"START RequestId: {request_id} Version: {fn.version}")]
        lines += [(started, line) for line in outcome.logs]
        lines += [(ended, f"END RequestId: {request_id}"), (ended, report_line(fn, outcome))]
        try:
            self._logs.append(fn.tenant, f"/aws/lambda/{fn.function_name}", stream, lines)
        except Exception:  # logs are best effort; the invocation's outcome is not
            log.exception("could not store logs of %s", request_id)
        return InvocationOutcome(
            request_id=request_id,
            payload=outcome.payload,
            error=outcome.error,
            started_ms=started,
            ended_ms=ended,
        )

    def set_platform_env(self, env: Mapping[str, str]) -> None:
        self._platform_env = dict(env)
