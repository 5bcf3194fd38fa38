"""`treadle dev --backend aws` against a moto server: a step, a wait and a callback end to
end through boto3, and the state really is in DynamoDB, S3, SQS and Lambda's control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_aliases_wire as aliases_wire
import test_audit_wire as audit_wire
import test_gc_wire as gc_wire
import test_limits_wire as limits_wire
import test_notifications_wire as notifications_wire
import test_redrive_wire as redrive_wire
import test_schedules_wire as schedules_wire
import test_usage_wire as usage_wire
from botocore.exceptions import ClientError

from support.moto_server import aws_env, moto_client, moto_server
from support.server import ServerProcess, client, deploy, new_tenant, v1

STAGE = "itest"
TENANT = "123456789012"
BUS = "treadle-itest-status"
WORKFLOW = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration


@durable_step
def double(step_ctx, n):
    return n * 2


@durable_execution
def handler(event, context: DurableContext):
    first = context.step(double(event["n"]), name="double")
    context.wait(Duration.from_seconds(event["wait"]), name="pause")
    approval = context.wait_for_callback(lambda cid, ctx: None, name="approval")
    return {"first": first, "approval": approval}
"""


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def server(moto: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Status changes go to an EventBridge bus whose rule feeds an SQS queue (read below);
    # webhooks may call this host's loopback receivers.
    events, sqs = moto_client(moto, "events"), moto_client(moto, "sqs")
    events.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName=BUS)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    pattern = {"source": ["treadle"], "detail-type": ["Durable Execution Status Change"]}
    events.put_rule(Name="status", EventBusName=BUS, EventPattern=json.dumps(pattern))
    events.put_targets(
        Rule="status", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn["QueueArn"]}]
    )
    env = aws_env(moto, STAGE, TREADLE_EVENT_BUS=BUS, TREADLE_WEBHOOK_ALLOW_PRIVATE="true")
    srv = ServerProcess(tmp_path_factory.mktemp("aws") / "data", env=env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _until(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _callback_id(lam: Any, arn: str) -> str | None:
    for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]:
        if e["EventType"] == "CallbackStarted":
            return str(e["CallbackStartedDetails"]["CallbackId"])
    return None


def test_step_wait_and_callback_end_to_end_in_aws_resources(
    server: ServerProcess, moto: str
) -> None:
    lam = client(server)
    deploy(lam, "wf", {"handler.py": WORKFLOW})
    resp = lam.invoke(
        FunctionName="wf", InvocationType="Event", Payload=json.dumps({"n": 21, "wait": 2})
    )
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    started = time.monotonic()
    callback_id = _until(lambda: _callback_id(lam, arn))
    assert time.monotonic() - started >= 2  # the wait ran out through an SQS delay
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result='"yes"')
    ex = _until(
        lambda: (
            (e := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] != "RUNNING" and e
        )
    )
    assert ex["Status"] == "SUCCEEDED", ex
    assert json.loads(ex["Result"]) == {"first": 42, "approval": '"yes"'}
    events = [
        e["EventType"] for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    ]
    assert events[0] == "ExecutionStarted" and events[-1] == "ExecutionSucceeded"
    assert {"StepSucceeded", "WaitSucceeded", "CallbackSucceeded"} <= set(events)

    # DynamoDB: the execution's record, batch log and history are items of the table.
    ddb = moto_client(moto, "dynamodb")
    items = ddb.query(
        TableName=f"treadle-{STAGE}",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"X#{arn}"}},
    )["Items"]
    kinds = {item["sk"]["S"].split("#")[0] for item in items}
    assert {"META", "B", "E"} <= kinds, kinds
    tenant_items = ddb.get_item(
        TableName=f"treadle-{STAGE}", Key={"pk": {"S": f"A#{TENANT}"}, "sk": {"S": "TENANT"}}
    )
    assert "Item" in tenant_items  # tenants too
    # S3: the code package and the tenant's Git packs.
    s3 = moto_client(moto, "s3")
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=f"treadle-{STAGE}-{TENANT}").get("Contents", [])
    ]
    assert any(k.startswith("code/") for k in keys), keys
    assert any(k.startswith(f"git/tenants/{TENANT}/repos/functions/") for k in keys), keys
    # SQS: timers went through the work queue (lease deadlines are still on their way).
    sqs = moto_client(moto, "sqs")
    url = sqs.get_queue_url(QueueName=f"treadle-{STAGE}-work")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesDelayed"]) >= 1, attributes
    # Lambda's control plane: the tenant function exists there, published and aliased.
    functions = moto_client(moto, "lambda").list_functions()["Functions"]
    assert f"treadle-{STAGE}-{TENANT}-wf" in [f["FunctionName"] for f in functions]


def test_a_restart_keeps_a_waiting_execution(server: ServerProcess) -> None:
    lam = client(server)
    deploy(lam, "wf2", {"handler.py": WORKFLOW})
    resp = lam.invoke(
        FunctionName="wf2", InvocationType="Event", Payload=json.dumps({"n": 1, "wait": 3})
    )
    arn = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    _until(
        lambda: any(
            e["EventType"] == "WaitStarted"
            for e in lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        )
    )
    # kill -9 mid-wait: the wait's timer is a row and an SQS message, not process memory.
    server.kill()
    server.start(port=server.port)
    lam = client(server)
    callback_id = _until(lambda: _callback_id(lam, arn))
    lam.send_durable_execution_callback_success(CallbackId=callback_id, Result='"ok"')
    ex = _until(
        lambda: (
            (e := lam.get_durable_execution(DurableExecutionArn=arn))["Status"] != "RUNNING" and e
        )
    )
    assert ex["Status"] == "SUCCEEDED", ex


LOGGER = """
def handler(event, context):
    print("hello from " + context.function_name)
    return "ok"
"""


QUICK = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def echo(step_ctx, n):
    return n


@durable_execution
def handler(event, context: DurableContext):
    return context.step(echo(event.get("n", 0)), name="echo")
"""


def _start_named(lam: Any, function: str, name: str, payload: bytes) -> str:
    """An Event start under a durable execution name; its execution's ARN."""
    resp = lam.invoke(
        FunctionName=function, InvocationType="Event", DurableExecutionName=name, Payload=payload
    )
    return str(resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])


def test_starts_over_the_running_quota_queue_on_dynamodb_and_run_as_capacity_frees(
    server: ServerProcess,
) -> None:
    # No capacity at first: every start is accepted QUEUED, whatever counts as running.
    account, keys = new_tenant(
        server, "queue-two", maxRunningExecutions=0, maxStartsPerSecond=100, maxQueued=2
    )
    lam = client(server, credentials=keys, retries={"max_attempts": 1, "mode": "standard"})
    deploy(lam, "quick", {"handler.py": QUICK})

    def start(name: str) -> str:
        return _start_named(lam, "quick", name, json.dumps({"n": name}).encode())

    def status_of(arn: str) -> str:
        return str(lam.get_durable_execution(DurableExecutionArn=arn)["Status"])

    first = start("one")
    assert start("one") == first  # the same start again is not another queued one
    second = start("two")
    assert [status_of(first), status_of(second)] == ["QUEUED", "QUEUED"]
    listed = lam.list_durable_executions_by_function(FunctionName="quick", Statuses=["QUEUED"])
    assert {e["DurableExecutionArn"] for e in listed["DurableExecutions"]} == {first, second}
    # Past maxQueued: the retryable 429, as before queueing existed.
    with pytest.raises(ClientError) as refused:
        start("three")
    assert refused.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert "2 queued executions" in refused.value.response["Error"]["Message"]
    status, usage = v1(server, "GET", f"/v1/tenants/{account}/usage", credentials=keys)
    assert status == 200 and usage["executions"]["queued"] == 2, usage
    # Other tenants are not held back by this one's backlog.
    other = client(server)
    deploy(other, "quick-other", {"handler.py": QUICK})
    theirs = other.invoke(FunctionName="quick-other", InvocationType="Event", Payload=b"{}")
    their_arn = theirs["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    assert other.get_durable_execution(DurableExecutionArn=their_arn)["Status"] != "QUEUED"

    # kill -9: the queue is items of the table, not process memory.
    server.kill()
    server.start(port=server.port)
    lam = client(server, credentials=keys)
    assert [status_of(first), status_of(second)] == ["QUEUED", "QUEUED"]

    # Room for one: the oldest runs, then the next as the first closes (FIFO).
    admin = server.credentials("treadle-admin")
    body = {"quotas": {"maxRunningExecutions": 1}}
    status, _ = v1(server, "PATCH", f"/v1/tenants/{account}", body, credentials=admin)
    assert status == 200
    _until(lambda: status_of(second) == "SUCCEEDED")
    assert status_of(first) == "SUCCEEDED"
    one = lam.get_durable_execution(DurableExecutionArn=first)
    two = lam.get_durable_execution_history(DurableExecutionArn=second)["Events"]
    # The second's first step began after the first had closed: it waited its turn.
    step = next(e for e in two if e["EventType"] == "StepStarted")
    assert step["EventTimestamp"] >= one["EndTimestamp"]
    assert json.loads(one["Result"]) == "one"
    status, usage = v1(server, "GET", f"/v1/tenants/{account}/usage", credentials=keys)
    assert usage["executions"]["queued"] == 0 and usage["executions"]["byStatus"]["SUCCEEDED"] == 2


WAITER = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    return context.wait_for_callback(lambda cid, ctx: None, name="approval")
"""


def _holding(server: ServerProcess, account: str) -> int:
    """The tenant's executions holding an invocation now (its usage counter)."""
    admin = server.credentials("treadle-admin")
    status, body = v1(server, "GET", f"/v1/tenants/{account}/usage", credentials=admin)
    assert status == 200, body
    return int(body["executions"]["running"])


def test_parked_executions_leave_room_under_the_running_quota_on_dynamodb(
    server: ServerProcess,
) -> None:
    account, keys = new_tenant(server, "parkers", maxRunningExecutions=2)
    lam = client(server, credentials=keys, retries={"max_attempts": 1, "mode": "standard"})
    deploy(lam, "parker", {"handler.py": WAITER})

    def park(name: str) -> str:
        return _start_named(lam, "parker", name, b"{}")

    parked = [park("p1"), park("p2")]
    _until(lambda: all(_callback_id(lam, a) for a in parked) and _holding(server, account) == 0)
    # Two parked on callbacks with a quota of 2: two more start at once, not QUEUED.
    more = [park("p3"), park("p4")]
    statuses = [lam.get_durable_execution(DurableExecutionArn=a)["Status"] for a in parked + more]
    assert statuses == ["RUNNING"] * 4


def test_function_logs_are_read_from_cloudwatch_logs(server: ServerProcess, moto: str) -> None:
    lam = client(server)
    deploy(lam, "talker", {"handler.py": LOGGER}, durable=False)
    assert json.loads(lam.invoke(FunctionName="talker", Payload=b"{}")["Payload"].read()) == "ok"
    logs = client(server, "logs")
    events = _until(
        lambda: logs.filter_log_events(logGroupName="/aws/lambda/talker", filterPattern="hello")[
            "events"
        ]
    )
    assert [e["message"].strip() for e in events] == ["hello from talker"]
    # They are in the group Lambda itself writes for the tenant function.
    groups = moto_client(moto, "logs").describe_log_groups()["logGroups"]
    assert f"/aws/lambda/treadle-{STAGE}-{TENANT}-talker" in [g["logGroupName"] for g in groups]
    # Another tenant asking for the same name reaches nothing of this tenant's.
    _, keys = new_tenant(server, "log-reader")
    with pytest.raises(ClientError) as missing:
        client(server, "logs", credentials=keys).filter_log_events(
            logGroupName="/aws/lambda/talker"
        )
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_an_unreachable_endpoint_is_reported_plainly(tmp_path: Path) -> None:
    env = {**os.environ, **aws_env("http://127.0.0.1:1", "nowhere")}
    proc = subprocess.run(
        [sys.executable, "-m", "treadle.cli", "dev", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "cannot set up the AWS backend at http://127.0.0.1:1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_aliases_and_configuration_updates_on_dynamodb(server: ServerProcess) -> None:
    """The embedded backend's wire tests of aliases, on the AWS adapters."""
    lam = client(server)
    aliases_wire.test_alias_lifecycle_and_its_errors(lam)
    aliases_wire.test_invoke_by_alias_runs_the_version_it_points_to(lam)
    aliases_wire.test_update_function_configuration_changes_latest_only(lam)


def test_redrive_on_dynamodb(server: ServerProcess) -> None:
    """The embedded backend's wire tests of redrive, on the AWS adapters."""
    lam = redrive_wire.deploy_all(client(server))
    redrive_wire.test_a_workflow_failed_at_step_7_of_10_redriven_on_version_2_runs_4_steps_again(
        server, lam
    )
    redrive_wire.test_a_step_failed_inside_a_child_context_reruns_the_context_replaying_its_done_steps(
        server, lam
    )
    redrive_wire.test_a_batch_redrives_each_failed_execution_once(server, lam)


def test_audit_on_dynamodb(server: ServerProcess) -> None:
    """The embedded backend's wire tests of the audit log, on the AWS adapters."""
    world = audit_wire.World(server)
    audit_wire.test_function_changes_each_leave_one_record_with_who_and_where(world)
    audit_wire.test_refused_calls_are_recorded_with_their_error_code(world)
    audit_wire.test_admin_changes_to_tenants_and_keys_are_recorded_about_that_tenant(world)
    audit_wire.test_a_tenant_never_sees_another_tenants_records(world)
    audit_wire.test_pages_are_newest_first_and_follow_the_marker(world)


def test_limits_per_execution_on_dynamodb(server: ServerProcess) -> None:
    """The embedded backend's wire tests of limits per execution, on the AWS adapters."""
    limits_wire.test_a_tenant_limited_to_5_operations_fails_a_10_step_workflow_and_the_default_does_not(
        server
    )
    limits_wire.test_the_limits_are_pinned_at_start_a_quota_change_applies_to_new_executions(server)
    limits_wire.test_a_payload_over_the_tenants_limit_is_refused_and_the_sdk_fails_the_execution(
        server
    )


def test_schedules_on_dynamodb(server: ServerProcess) -> None:
    """The embedded backend's wire tests of schedules, on the AWS adapters."""
    lam = schedules_wire.deploy_all(client(server))
    schedules_wire.test_a_schedule_is_created_triggered_paused_resumed_and_deleted(server, lam)
    schedules_wire.test_another_tenant_cannot_see_or_touch_a_schedule(server, lam)
    schedules_wire.test_a_name_taken_is_a_conflict_and_pages_go_on(server, lam)


def test_usage_and_inventory_on_dynamodb(server: ServerProcess, tmp_path: Path) -> None:
    """The embedded backend's wire tests of usage and the inventory, on the AWS adapters."""
    usage_wire.test_a_tenant_reads_its_usage_the_admin_anyones_and_another_tenant_none(server)
    usage_wire.test_the_admin_pages_the_inventory_with_last_uses_and_tenants_may_not(
        server, tmp_path
    )


def test_code_packages_are_reclaimed_from_s3(moto: str, tmp_path: Path) -> None:
    """The embedded backend's wire test of code collection, on DynamoDB counts and S3
    (a stage of its own: the platform's run sees every package of its bucket)."""
    env = aws_env(moto, "itestcode", TREADLE_GC_PACK_GRACE_SECONDS="0")
    srv = ServerProcess(tmp_path / "data", env=env)
    srv.start()
    try:
        s3 = moto_client(moto, "s3")
        bucket = next(
            b["Name"]
            for b in s3.list_buckets()["Buckets"]
            if b["Name"].startswith("treadle-itestcode-")
        )

        def packages() -> set[str]:
            found = s3.list_objects_v2(Bucket=bucket, Prefix="code/").get("Contents", [])
            return {o["Key"].removeprefix("code/").removesuffix(".zip") for o in found}

        gc_wire.check_code_packages_reclaimed(srv, packages)
    finally:
        srv.stop()


def test_status_changes_reach_the_stream_webhooks_and_eventbridge_on_aws(
    server: ServerProcess, moto: str
) -> None:
    """The stream (after DynamoDB's settle window), a webhook's signed deliveries with a
    retry, and the EventBridge bus (a rule into SQS), all from the same commits."""
    lam = client(server)
    deploy(lam, "notified", {"handler.py": notifications_wire.WORKFLOW})
    receiver = notifications_wire.Receiver()
    try:
        notifications_wire.test_a_webhook_gets_signed_deliveries_retried_after_a_failure(
            server, lam, receiver
        )
    finally:
        receiver.close()
    arn = notifications_wire.run(lam, 7)

    def on_stream() -> list[str]:
        events, _ = notifications_wire.read_all(server)
        mine = [e["detail"]["status"] for e in events if e["detail"]["durableExecutionArn"] == arn]
        return mine if "SUCCEEDED" in mine else []

    assert _until(on_stream) == ["RUNNING", "SUCCEEDED"]
    sqs = moto_client(moto, "sqs")
    queue = sqs.get_queue_url(QueueName=BUS)["QueueUrl"]
    seen: list[str] = []

    def on_bus() -> bool:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            detail = json.loads(message["Body"])["detail"]
            if detail["durableExecutionArn"] == arn:
                seen.append(detail["status"])
        return "SUCCEEDED" in seen

    _until(on_bus)
    assert sorted(seen) == ["RUNNING", "SUCCEEDED"]
