"""A new execution: its record, its EXECUTION operation, its first event and timers."""

from __future__ import annotations

import hashlib

from treadle.domain.engine.config import EngineConfig
from treadle.domain.engine.history import payload
from treadle.domain.engine.working_set import WorkingSet, new_working_set
from treadle.domain.errors import ExecutionAlreadyStarted
from treadle.domain.lifecycle import next_execution_status, next_operation_status
from treadle.domain.models import (
    Execution,
    ExecutionDetails,
    ExecutionLimits,
    ExecutionStatus,
    Operation,
    OperationStatus,
    OperationType,
)
from treadle.domain.ports import FunctionVersion, Timer, TimerKind


def input_hash(input_payload: str | None) -> str:
    return hashlib.sha256((input_payload or "").encode()).hexdigest()


def execution_arn(fn: FunctionVersion, name: str, exec_id: str) -> str:
    return f"{fn.qualified_arn}/durable-execution/{name}/{exec_id}"


def same_start(existing: Execution, digest: str) -> Execution:
    """A start repeated under the same name is the same start only with the same input."""
    if existing.input_hash != digest:
        raise ExecutionAlreadyStarted(
            f"Durable execution {existing.name} already exists with a different input."
        )
    return existing


def new_execution(
    fn: FunctionVersion,
    name: str,
    exec_id: str,
    input_payload: str | None,
    *,
    now_ms: int,
    config: EngineConfig,
    parent: tuple[str, str] | None,
    limits: ExecutionLimits | None = None,
) -> tuple[Execution, WorkingSet]:
    cfg = fn.durable_config
    timeout_s = (cfg.ExecutionTimeout if cfg else None) or config.default_execution_timeout_s
    retention = (cfg.RetentionPeriodInDays if cfg else None) or config.default_retention_days
    arn = execution_arn(fn, name, exec_id)
    ex = Execution(
        arn=arn,
        tenant=fn.tenant,
        function_name=fn.function_name,
        version=fn.version,
        name=name,
        exec_id=exec_id,
        status=ExecutionStatus(next_execution_status(None, "start")),
        input_payload=input_payload,
        input_hash=input_hash(input_payload),
        start_ms=now_ms,
        execution_timeout_s=timeout_s,
        retention_days=retention,
        parent_arn=parent[0] if parent else None,
        parent_op_id=parent[1] if parent else None,
        pinned_function=fn.model_dump(mode="json"),
        # Pinned like the configuration: the tenant's quotas now, or AWS's defaults.
        limits=limits or ExecutionLimits(),
    )
    ws = new_working_set(now_ms)
    ws.put(
        Operation(
            Id=exec_id,
            Type=OperationType.EXECUTION,
            StartTimestamp=now_ms,
            Status=OperationStatus(next_operation_status("EXECUTION", None, "start")),
            ExecutionDetails=ExecutionDetails(InputPayload=input_payload),
        )
    )
    ws.log.add(
        "ExecutionStarted",
        now_ms,
        {"Input": payload(input_payload), "ExecutionTimeout": timeout_s},
        op_id=exec_id,
        name=name,
    )
    ws.set_timers.append(Timer(arn, TimerKind.INVOKE, "", now_ms))
    ws.set_timers.append(Timer(arn, TimerKind.EXECUTION_TIMEOUT, "", now_ms + timeout_s * 1000))
    return ex, ws
