"""A checkout in three steps; `charge` fails while the function's FAIL_CHARGE is "1".

README's redrive example: the first run fails at `charge`; once the configuration is
fixed and published, a redrive replays `reserve` from the record (same reservation id)
and runs `charge` and `ship`.
"""

import os
import uuid

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import StepConfig
from aws_durable_execution_sdk_python.retries import RetryPresets


def reserve(step_ctx: StepContext) -> str:
    return uuid.uuid4().hex  # a new id each time it really runs


def charge(step_ctx: StepContext) -> str:
    if os.environ.get("FAIL_CHARGE") == "1":
        raise RuntimeError("card declined")
    return "charged"


def ship(step_ctx: StepContext) -> str:
    return "shipped"


@durable_execution
def handler(event: dict, context: DurableContext) -> dict:
    once = StepConfig(retry_strategy=RetryPresets.none())
    reservation = context.step(reserve, name="reserve", config=once)
    context.step(charge, name="charge", config=once)
    return {"reservation": reservation, "status": context.step(ship, name="ship", config=once)}
