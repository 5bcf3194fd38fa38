from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    a = context.create_callback(name=event[0]).result()
    b = context.create_callback(name=event[1]).result()
    return {"a": a, "b": b}
