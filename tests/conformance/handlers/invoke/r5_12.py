import os

from aws_durable_execution_sdk_python import DurableContext, durable_execution

PREFIX = os.environ.get("CONFORMANCE_TARGET_PREFIX", "")
ECHO = PREFIX + "echo"
FAIL = PREFIX + "fail"


@durable_execution
def handler(event, context: DurableContext):
    result = context.invoke(ECHO, {"value": 7})
    return context.step(lambda ctx: {"processed": result}, name="process")
