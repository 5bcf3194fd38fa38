import os
import tempfile

from aws_durable_execution_sdk_python import DurableContext, durable_execution


def body(child, value):
    def crash_once(ctx):
        marker = os.path.join(
            tempfile.gettempdir(), "r3_12-" + child.state.durable_execution_arn.rsplit("/", 1)[-1]
        )
        if not os.path.exists(marker):
            open(marker, "w").close()
            import time

            time.sleep(1.5)  # let the SDK flush the START checkpoints it batches
            os._exit(1)
        return value

    return child.step(crash_once, name="crash_once")


@durable_execution
def handler(event, context: DurableContext):
    return context.run_in_child_context(lambda child: body(child, event))
