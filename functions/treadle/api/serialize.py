"""Domain objects -> Lambda JSON. Timestamps become epoch seconds, as rest-json expects."""

from __future__ import annotations

import time
from typing import Any

from treadle.app.code_delivery import FUNCTIONS_REPO, function_dir
from treadle.domain.engine import strip_execution_data
from treadle.domain.models import Event, Execution, Operation
from treadle.domain.ports import FunctionVersion
from treadle.observability.trace_context import execution_trace_header


def seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def convert_timestamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                v / 1000
                if k.endswith("Timestamp") and isinstance(v, int)
                else convert_timestamps(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [convert_timestamps(v) for v in value]
    return value


def operation(op: Operation) -> dict[str, Any]:
    return convert_timestamps(op.wire())  # type: ignore[no-any-return]


def event(ev: Event, include_data: bool = True) -> dict[str, Any]:
    data = ev.wire()
    if not include_data:
        data = strip_execution_data(data)
    return convert_timestamps(data)  # type: ignore[no-any-return]


def function_arn_of(ex: Execution) -> str:
    return ex.arn.split("/durable-execution/")[0]


def execution_summary(ex: Execution) -> dict[str, Any]:
    out: dict[str, Any] = {
        "DurableExecutionArn": ex.arn,
        "DurableExecutionName": ex.name,
        "FunctionArn": function_arn_of(ex),
        "Status": ex.status.value,
        "StartTimestamp": seconds(ex.start_ms),
    }
    if ex.end_ms is not None:
        out["EndTimestamp"] = seconds(ex.end_ms)
    return out


def execution_detail(ex: Execution, include_data: bool = True) -> dict[str, Any]:
    out = execution_summary(ex)
    out["Version"] = ex.version
    # The trace every invocation of this execution carries in `_X_AMZN_TRACE_ID`.
    out["TraceHeader"] = {"XAmznTraceId": execution_trace_header(ex.arn)}
    out["DurableConfig"] = {
        "ExecutionTimeout": ex.execution_timeout_s,
        "RetentionPeriodInDays": ex.retention_days,
    }
    if ex.end_ms is None:
        out["ExpectedExecutionTimeoutTimestamp"] = seconds(
            ex.start_ms + ex.execution_timeout_s * 1000
        )
    if include_data:
        out["ExecutionDataIncluded"] = True
        if ex.input_payload is not None:
            out["InputPayload"] = ex.input_payload
        if ex.result is not None and ex.status.value == "SUCCEEDED":
            out["Result"] = ex.result
    if ex.error is not None:
        out["Error"] = ex.error.wire()
    # Treadle's redrive links (docs/redrive.md): extra fields, present only when set.
    if ex.redriven_from is not None:
        out["RedrivenFrom"] = ex.redriven_from
    if ex.redriven_to:
        out["RedrivenTo"] = list(ex.redriven_to)
    # Treadle's limits per execution (docs/limits.md): those pinned at start, and what
    # the execution has used of them.
    limits = ex.limits
    out["ExecutionLimits"] = {
        "MaxOperations": limits.max_operations,
        "MaxHistoryBytes": limits.max_history_bytes,
        "MaxPayloadBytes": limits.max_payload_bytes,
    }
    out["ExecutionUsage"] = {"Operations": ex.operation_count, "HistoryBytes": ex.history_bytes}
    return out


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}+0000"


def function_configuration(fn: FunctionVersion) -> dict[str, Any]:
    out: dict[str, Any] = {
        "FunctionName": fn.function_name,
        "FunctionArn": fn.qualified_arn if fn.version != "$LATEST" else fn.function_arn,
        "Runtime": fn.runtime,
        "Role": fn.role,
        "Handler": fn.handler,
        "CodeSize": fn.code_size,
        "Description": fn.description,
        "Timeout": fn.timeout_s,
        "MemorySize": fn.memory_mb,
        "EphemeralStorage": {"Size": fn.ephemeral_storage_mb},
        "LastModified": _iso(fn.last_modified_ms),
        "CodeSha256": fn.code_sha256,
        "Version": fn.version,
        "RevisionId": fn.revision_id,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
    }
    if fn.environment:
        out["Environment"] = {"Variables": dict(fn.environment)}
    if fn.durable_config is not None:
        out["DurableConfig"] = fn.durable_config.wire()
    return out


# Where a version's code came from. botocore keeps only the fields of its model, so
# GetFunction carries it twice: as `Tags` under the reserved `treadle:` prefix (like
# AWS's own `aws:` tags), which boto3 users see, and as a top-level `Treadle` object in
# the raw JSON. Versions uploaded before code was mirrored have no commit: only the
# code hash is shown.


def code_delivery(fn: FunctionVersion) -> dict[str, Any]:
    """GetFunction's `Treadle` object."""
    out: dict[str, Any] = {"CodeSha256": fn.code_sha256}
    if fn.commit_sha is not None:
        out["Repository"] = FUNCTIONS_REPO
        out["Path"] = f"{function_dir(fn.function_name)}/"
        out["CommitSha"] = fn.commit_sha
    if fn.source is not None:
        out["Source"] = {
            "Repository": fn.source.repository,
            "Ref": fn.source.ref,
            "Path": fn.source.path,
            "CommitSha": fn.source.commit_sha,
        }
    return out


def code_delivery_tags(fn: FunctionVersion) -> dict[str, str]:
    """The same as `code_delivery`, flattened into GetFunction's `Tags` map."""
    tags = {"treadle:code-sha256": fn.code_sha256}
    if fn.commit_sha is not None:
        tags["treadle:repository"] = FUNCTIONS_REPO
        tags["treadle:path"] = f"{function_dir(fn.function_name)}/"
        tags["treadle:commit-sha"] = fn.commit_sha
    if fn.source is not None:
        tags["treadle:source-repository"] = fn.source.repository
        tags["treadle:source-ref"] = fn.source.ref
        tags["treadle:source-path"] = fn.source.path
        tags["treadle:source-commit-sha"] = fn.source.commit_sha
    return tags
