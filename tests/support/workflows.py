"""Tenant code shared by end-to-end tests: a durable workflow of a step, an optional
durable wait and an optional callback, driven by its input."""

WORKFLOW = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step
from aws_durable_execution_sdk_python.config import Duration


@durable_step
def double(step_ctx, n):
    return n * 2


@durable_execution
def handler(event, context: DurableContext):
    first = context.step(double(event["n"]), name="double")
    if event.get("wait"):
        context.wait(Duration.from_seconds(event["wait"]), name="pause")
    if event.get("callback"):
        approval = context.wait_for_callback(lambda cid, ctx: None, name="approval")
        return {"first": first, "approval": approval}
    return {"first": first}
"""

# Events by type and sleep_until (`treadle_workflows`), driven by its input.
EVENTED = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration
from treadle_workflows import sleep_until, wait_for_event


@durable_execution
def handler(event, context: DurableContext):
    mode = event["mode"]
    if mode == "gate":
        wait_for_event(context, "go")
        return wait_for_event(context, "approval", timeout=Duration.from_days(7))
    if mode == "stream":
        return [wait_for_event(context, "item") for _ in range(event["n"])]
    if mode == "sleep":
        sleep_until(context, event["until"])
        return "woke"
    return wait_for_event(context, "approval")
"""

# Ten steps, each returning a fresh nonce: a step replayed from the record returns the
# recorded nonce, a step run again a new one. Step FAIL_AT (0: none) fails, no retries.
TEN_STEPS = """
import uuid

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

FAIL_AT = {fail_at}


def work(i):
    def run(step_ctx):
        if i == FAIL_AT:
            raise RuntimeError(f"step {{i}} failed")
        return uuid.uuid4().hex

    return run


@durable_execution
def handler(event, context: DurableContext):
    once = StepConfig(retry_strategy=RetryPresets.none())
    return [context.step(work(i), name=f"s{{i}}", config=once) for i in range(1, 11)]
"""

# A step, then steps s2..s4 inside a child context "group"; step FAIL_AT fails.
GROUPED_STEPS = """
import uuid

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets

FAIL_AT = {fail_at}
ONCE = StepConfig(retry_strategy=RetryPresets.none())


def work(i):
    def run(step_ctx):
        if i == FAIL_AT:
            raise RuntimeError(f"step {{i}} failed")
        return uuid.uuid4().hex

    return run


def group(ctx):
    return [ctx.step(work(i), name=f"s{{i}}", config=ONCE) for i in (2, 3, 4)]


@durable_execution
def handler(event, context: DurableContext):
    first = context.step(work(1), name="s1", config=ONCE)
    return [first, *context.run_in_child_context(group, name="group")]
"""
