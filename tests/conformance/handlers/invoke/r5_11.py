import os

from aws_durable_execution_sdk_python import DurableContext, durable_execution

PREFIX = os.environ.get("CONFORMANCE_TARGET_PREFIX", "")
ECHO = PREFIX + "echo"
FAIL = PREFIX + "fail"


@durable_execution
def handler(event, context: DurableContext):
    value = context.step(lambda ctx: {"computed": 42}, name="compute")
    return context.invoke(ECHO, value)
