from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def handler(event, context: DurableContext):
    r1 = context.step(lambda ctx: "first", name="step_one")
    return context.step(lambda ctx: f"{r1}_second", name="step_two")
