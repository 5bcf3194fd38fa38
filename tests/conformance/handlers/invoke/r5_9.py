import os

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration

PREFIX = os.environ.get("CONFORMANCE_TARGET_PREFIX", "")
ECHO = PREFIX + "echo"
FAIL = PREFIX + "fail"


@durable_execution
def handler(event, context: DurableContext):
    result = context.invoke(ECHO, {"value": 1})
    context.wait(Duration.from_seconds(1))
    return result
