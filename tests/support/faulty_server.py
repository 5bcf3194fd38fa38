"""`treadle dev --backend aws` with a fault injected into its boto3 clients
(support/aws_faults.py): `python -m support.faulty_server dev ...` with `tests/` on
PYTHONPATH, the fault named by TREADLE_TEST_FAULT (none: the same plumbing, no fault).

Two patches, both of this process only:

- `AwsClients.create` installs the fault's hooks on the clients it makes;
- the emulated Lambda invokes through the Lambda client again: its `Invoke` is
  answered by a `before-call` hook that runs the code in the local sandbox (moto cannot
  run code here), so a refused or timed-out Invoke reaches `LambdaRuntime.invoke`'s
  own error handling as a real one would.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

from support.aws_faults import FAULTS, Injector
from treadle.adapters.aws import lambda_runtime, resources
from treadle.domain.ports import FunctionVersion

ENV_FAULT = "TREADLE_TEST_FAULT"
ENV_SEED = "TREADLE_TEST_FAULT_SEED"
ENV_LOG = "TREADLE_TEST_FAULT_LOG"
ENV_ARM = "TREADLE_TEST_FAULT_ARM"

_current = threading.local()


def _injector() -> Injector:
    name = os.environ.get(ENV_FAULT, "")
    return Injector(
        FAULTS[name] if name else None,
        int(os.environ.get(ENV_SEED, "1")),
        Path(os.environ[ENV_LOG]),
        Path(os.environ[ENV_ARM]),
    )


def _install(injector: Injector) -> None:
    create = resources.AwsClients.create.__func__  # type: ignore[attr-defined]

    def faulty_create(cls: type[resources.AwsClients], *args: Any, **kwargs: Any) -> Any:
        clients = create(cls, *args, **kwargs)
        for service, client in (
            ("dynamodb", clients.dynamodb),
            ("s3", clients.s3),
            ("sqs", clients.sqs),
            ("lambda", clients.lambda_),
        ):
            injector.install(client, service)
        return clients

    resources.AwsClients.create = classmethod(faulty_create)  # type: ignore[assignment,method-assign]

    init = lambda_runtime.LambdaRuntime.__init__
    invoke = lambda_runtime.LambdaRuntime.invoke

    def faulty_init(self: Any, client: Any, **kwargs: Any) -> None:
        init(self, client, **kwargs)
        sandbox, self._invoker = self._invoker, None
        if sandbox is None:
            return

        def serve(params: Any, **_: Any) -> Any:
            refused = injector.invoke_refused(params)
            if refused is not None:
                return refused
            fn, payload, request_id = _current.call
            outcome = sandbox(fn, payload, request_id)
            body, headers = outcome.payload or b"null", {}
            parsed: dict[str, Any] = {"StatusCode": 200}
            if injector.invoke_timed_out():
                # What the runtime answers when the function outlives its timeout.
                outcome_error: Any = {"errorMessage": "Task timed out after 60.00 seconds"}
            else:
                outcome_error = outcome.error
            if outcome_error is not None:
                body = json.dumps(outcome_error).encode()
                parsed["FunctionError"] = "Unhandled"
            parsed["Payload"] = StreamingBody(io.BytesIO(body), len(body))
            return AWSResponse("https://injected", 200, headers, None), parsed

        client.meta.events.register("before-call.lambda.Invoke", serve)

    def faulty_invoke(self: Any, fn: FunctionVersion, payload: bytes, request_id: str) -> Any:
        _current.call = (fn, payload, request_id)
        return invoke(self, fn, payload, request_id)

    lambda_runtime.LambdaRuntime.__init__ = faulty_init  # type: ignore[method-assign]
    lambda_runtime.LambdaRuntime.invoke = faulty_invoke  # type: ignore[method-assign]


if __name__ == "__main__":
    _install(_injector())
    from treadle.cli import main

    sys.exit(main(sys.argv[1:]))
