"""A scripted runtime and an engine over SQLite, for engine-level tests.

The runtime is a real fake: it receives the envelope the engine built and talks to the
engine the way the SDK would (checkpoint with the envelope's token), then returns the
durable invocation output.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from support.fakes import ManualClock
from treadle.adapters.aws import DynamoExecutionStore, create_tables
from treadle.adapters.local.basics import RandomIds
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.domain.engine import Engine, EngineConfig, TokenCodec
from treadle.domain.models import CheckpointRequest, DurableConfig
from treadle.domain.ports import FunctionVersion, InvocationOutcome, Timer

Script = Callable[[dict[str, Any], "Harness"], dict[str, Any]]


REGION = "us-east-1"


class ScriptedRuntime:
    def __init__(self) -> None:
        self.scripts: list[Script] = []
        self.harness: Harness | None = None
        self.envelopes: list[dict[str, Any]] = []

    def invoke(self, fn: FunctionVersion, payload: bytes, request_id: str) -> InvocationOutcome:
        envelope = json.loads(payload)
        self.envelopes.append(envelope)
        assert self.harness is not None
        script = self.scripts.pop(0)
        now = self.harness.clock.now_ms()
        try:
            out = script(envelope, self.harness)
        except RuntimeError as exc:
            return InvocationOutcome(
                request_id, None, {"errorType": "Crash", "errorMessage": str(exc)}, now, now
            )
        return InvocationOutcome(request_id, json.dumps(out).encode(), None, now, now)


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.db = Database(tmp / "t.db")
        self.store = SqliteExecutionStore(self.db)
        self.functions = SqliteFunctionStore(self.db)
        self.clock = ManualClock()
        self.runtime = ScriptedRuntime()
        self.runtime.harness = self
        self.closed: list[str] = []
        self.dynamodb: Any = None  # the DynamoDB client under `harness_on("dynamodb")`
        self.engine = Engine(
            store=self.store,
            functions=self.functions,
            runtime=self.runtime,
            clock=self.clock,
            ids=RandomIds(),
            tokens=TokenCodec(b"k" * 32),
            dispatcher=self,
            listener=self,
            config=EngineConfig(invocation_retry_base_s=1.0),
        )
        self.fn = FunctionVersion(
            tenant="123456789012",
            function_name="f",
            version="$LATEST",
            function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
            handler="h.handler",
            durable_config=DurableConfig(ExecutionTimeout=3600),
            code_sha256="x",
            code_size=1,
            code_key="k",
            last_modified_ms=0,
            revision_id="r",
        )
        self.functions.put_latest(self.fn, create=True)

    def dispatch(self, timers: Sequence[Timer], now_ms: int) -> list[Timer]:
        # The timers are rows: `pump` reads them, as the embedded scheduler does.
        return []

    def execution_closed(self, arn: str) -> None:
        self.closed.append(arn)

    def pump(self) -> None:
        """Fire every timer due at the current (manual) time, until none is."""
        for _ in range(100):
            due = self.store.due_timers(self.clock.now_ms(), 100)
            if not due:
                return
            for timer in due:
                self.engine.fire(timer)
        raise AssertionError("timers keep firing")

    def checkpoint(
        self, env: dict[str, Any], updates: list[dict[str, Any]], token: str | None = None
    ) -> Any:
        req = CheckpointRequest.model_validate(
            {"CheckpointToken": token or env["CheckpointToken"], "Updates": updates}
        )
        return self.engine.checkpoint(env["DurableExecutionArn"], req)

    def history(self, arn: str) -> list[str]:
        return [e.EventType for e in self.store.events(arn, after_id=0, limit=1000)]


def step(op_id: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"Id": op_id, "Type": "STEP", "SubType": "Step", "Action": action, **extra}


@contextlib.contextmanager
def harness_on(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> Iterator[Harness]:
    """A harness whose engine runs on `kind`'s execution store: "sqlite" as made, or
    "dynamodb" (moto, a table and bucket called `name`, never a real endpoint)."""
    harness = Harness(tmp_path)
    if kind == "sqlite":
        yield harness
        return
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        create_tables(dynamodb, name)
        s3.create_bucket(Bucket=name)
        store = DynamoExecutionStore(dynamodb, name, s3_client=s3, bucket=name)
        harness.store = store  # type: ignore[assignment]
        harness.dynamodb = dynamodb
        harness.engine.store = store
        yield harness
