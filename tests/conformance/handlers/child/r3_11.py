from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


def body(child, value):
    # The durable logger skips replays; its underlying logger does not, so the
    # re-execution of this child body in ReplayChildren mode stays observable.
    child.logger.get_logger().info(
        f"child body running for {value}", extra={"executionArn": child.state.durable_execution_arn}
    )
    small = child.step(lambda ctx: value, name="small")
    return small * (300 * 1024 // max(1, len(small)) + 1)


@durable_execution
def handler(event, context: DurableContext):
    big = context.run_in_child_context(lambda child: body(child, event), name="child")
    context.wait(Duration.from_seconds(1))
    return len(big)
