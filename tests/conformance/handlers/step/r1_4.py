from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def build_response(step_ctx, event):
    return {"user": {"name": event["name"], "tags": event["tags"]}, "count": len(event["tags"])}


@durable_execution
def handler(event, context: DurableContext):
    return context.step(build_response(event))
