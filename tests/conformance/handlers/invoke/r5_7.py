import os

from aws_durable_execution_sdk_python import DurableContext, durable_execution

PREFIX = os.environ.get("CONFORMANCE_TARGET_PREFIX", "")
ECHO = PREFIX + "echo"
FAIL = PREFIX + "fail"


@durable_execution
def handler(event, context: DurableContext):
    # Near the 256 KB checkpoint payload limit once serialised.
    return context.invoke(PREFIX + "size", {"data": "x" * (250 * 1024)})
