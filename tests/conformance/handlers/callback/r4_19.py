from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    cb_a = context.create_callback(name=event[0])
    cb_b = context.create_callback(name=event[1])
    b = cb_b.result()
    a = cb_a.result()
    return {"a": a, "b": b}
