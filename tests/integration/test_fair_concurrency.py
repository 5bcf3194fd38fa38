"""Fair concurrency on the wire (issue 14, point 5): `maxRunningExecutions` counts only
executions holding or awaiting an invocation, so parked ones leave room; a start over it
is QUEUED and promoted when one parks; a synchronous invoke of a queued start waits for
its result; and the QUEUED status change reaches the stream before the promotion's
RUNNING. Through a real `treadle dev` and boto3."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from support.server import ServerProcess, client, deploy, new_tenant, v1

# `hold`: seconds one step keeps the invocation busy; `park`: then wait for a callback
# (the invocation ends, the execution stays RUNNING, parked).
HANDLER = """
import time
import urllib.parse
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    hold = event.get("hold", 0)
    if hold:
        context.step(lambda _: time.sleep(hold), name="busy")
    if event.get("park"):
        context.wait_for_callback(lambda cid, ctx: None, name="park")
    return "done"
"""

T = TypeVar("T")


def _until(probe: Callable[[], T | None], timeout_s: float = 60) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


class Tenant:
    def __init__(self, server: ServerProcess, name: str, **quotas: int) -> None:
        self.server = server
        self.account, self.keys = new_tenant(server, name, **quotas)
        self.lam = client(server, credentials=self.keys, retries={"max_attempts": 1})
        deploy(self.lam, "fair", {"handler.py": HANDLER})

    def start(self, **event: Any) -> str:
        out = self.lam.invoke(
            FunctionName="fair", InvocationType="Event", Payload=json.dumps(event).encode()
        )
        assert out["StatusCode"] == 202
        return str(out["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])

    def status(self, arn: str) -> str:
        return str(self.lam.get_durable_execution(DurableExecutionArn=arn)["Status"])

    def holding(self) -> int:
        """Executions holding an invocation now (the usage counter)."""
        path = f"/v1/tenants/{self.account}/usage"
        status, body = v1(self.server, "GET", path, credentials=self.keys)
        assert status == 200, body
        return int(body["executions"]["running"])

    def parked(self, arn: str) -> bool:
        events = self.lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        return any(e["EventType"] == "CallbackStarted" for e in events)

    def all_parked(self, arns: list[str]) -> bool:
        return all(self.parked(a) for a in arns) and self.holding() == 0


def test_parked_executions_leave_room_and_a_queued_start_runs_when_one_parks(
    server: ServerProcess,
) -> None:
    t = Tenant(server, "fair-parking", maxRunningExecutions=2, maxStartsPerSecond=100)
    parked = [t.start(park=True), t.start(park=True)]
    _until(lambda: t.all_parked(parked))
    # Two RUNNING executions parked on callbacks, the limit two: a third runs at once.
    third = t.start(park=True)
    assert t.status(third) == "RUNNING"
    assert [t.status(a) for a in parked] == ["RUNNING", "RUNNING"]
    _until(lambda: t.all_parked([third]))
    # Two busy in a long step hold both slots: a start now queues...
    busy = [t.start(hold=8, park=True), t.start(hold=8, park=True)]
    queued = t.start(park=True)
    assert t.status(queued) == "QUEUED"
    # ...and runs once they park (they never close: parking alone frees the slots).
    _until(lambda: t.status(queued) == "RUNNING")
    assert [t.status(a) for a in busy] == ["RUNNING", "RUNNING"]
    assert all(t.parked(a) for a in busy)


def test_a_synchronous_invoke_of_a_queued_start_returns_its_result_once_promoted(
    server: ServerProcess,
) -> None:
    t = Tenant(server, "fair-sync", maxRunningExecutions=1, maxStartsPerSecond=100)
    cursor = _stream(t, "?start=latest")[1]
    blocker = t.start(hold=3)
    out = t.lam.invoke(FunctionName="fair", InvocationType="RequestResponse", Payload=b"{}")
    arn = out["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    assert out["StatusCode"] == 200 and "FunctionError" not in out
    assert json.loads(out["Payload"].read()) == "done"
    assert t.status(blocker) == "SUCCEEDED"
    # The stream tells the queued start's story in order: QUEUED, RUNNING, SUCCEEDED.
    seen: list[tuple[str, str | None]] = []

    def story() -> bool:
        nonlocal cursor
        events, cursor = _stream(t, f"?cursor={cursor}")
        seen.extend(
            (e["detail"]["status"], e["detail"].get("previousStatus"))
            for e in events
            if e["detail"]["durableExecutionArn"] == arn
        )
        return len(seen) >= 3

    _until(story)
    assert seen == [("QUEUED", None), ("RUNNING", "QUEUED"), ("SUCCEEDED", "RUNNING")]


def _stream(t: Tenant, query: str) -> tuple[list[dict[str, Any]], str]:
    status, page = v1(t.server, "GET", "/v1/executions/events" + query, credentials=t.keys)
    assert status == 200, page
    return page["events"], page["nextCursor"]


def test_batch_starts_redrives_and_schedule_firings_queue_like_any_start(
    server: ServerProcess,
) -> None:
    t = Tenant(server, "fair-others", maxRunningExecutions=1, maxStartsPerSecond=100, maxQueued=4)
    source = t.start(hold=0.01)  # one quick step, to redrive from
    _until(lambda: t.status(source) == "SUCCEEDED")
    busy = t.start(hold=8, park=True)  # holds the only slot for a while
    # A batch: each entry is admitted as a start of its own.
    status, body = _batch(t, [{"input": {}}, {"input": {}}])
    assert status == 200 and [r["status"] for r in body["results"]] == ["QUEUED", "QUEUED"]
    batched = [r["executionArn"] for r in body["results"]]
    # A redrive of a closed execution.
    path = f"/v1/executions/{urllib.parse.quote(source, safe='')}/redrive"
    from_busy = {"fromStep": {"name": "busy"}}
    status, redriven = v1(server, "POST", path, from_busy, credentials=t.keys)
    assert status == 200 and redriven["created"], redriven
    assert t.status(redriven["executionArn"]) == "QUEUED"
    # A schedule's firing (triggered by hand here; the cron's go the same way).
    schedule = {"name": "fair-tick", "cron": "0 3 * * *", "function": "fair", "input": {}}
    status, made = v1(server, "POST", "/v1/schedules", schedule, credentials=t.keys)
    assert status == 201, made
    status, firing = v1(server, "POST", "/v1/schedules/fair-tick/trigger", None, credentials=t.keys)
    assert status == 200 and firing["outcome"] == "started", firing
    assert t.status(firing["executionArn"]) == "QUEUED"
    # The queue is full (maxQueued 4): the next batch entry alone is refused, 429.
    status, body = _batch(t, [{"input": {}}])
    assert status == 200 and body["results"][0]["error"]["status"] == 429, body
    # Once the busy one parks, the queue drains in order, one at a time.
    queued = [*batched, redriven["executionArn"], firing["executionArn"]]
    _until(lambda: all(t.status(a) == "SUCCEEDED" for a in queued))
    assert t.status(busy) == "RUNNING"


def _batch(t: Tenant, entries: list[dict[str, Any]]) -> tuple[int, Any]:
    path = "/v1/functions/fair/executions:batch"
    return v1(t.server, "POST", path, {"executions": entries}, credentials=t.keys)
