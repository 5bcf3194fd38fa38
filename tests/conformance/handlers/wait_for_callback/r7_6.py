from aws_durable_execution_sdk_python import DurableContext, durable_execution


def submit(callback_id, ctx):
    """The external system learns the callback id elsewhere (the test reads the history)."""
    return None


@durable_execution
def handler(event, context: DurableContext):
    try:
        return context.wait_for_callback(submit, name=event)
    except Exception:
        return "recovered"
