"""One contract for every FunctionRuntime: the local sandbox (embedded) and Lambda (AWS).

The Lambda runtime runs in emulated mode: its control plane (CreateFunction,
UpdateFunctionCode, PublishVersion, aliases...) is moto's, and, since moto cannot run
code without Docker, the local sandbox is its injected invoker. Both runtimes share one
warm sandbox per module; each Lambda test gets a fresh moto account.

Tests at the end exercise what only the Lambda runtime has: names, reuse across
processes, configuration changes, the IAM propagation retry, a function deleted behind
its back, and the mapping of a real Invoke response (a canned one around moto's client).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from moto import mock_aws

from treadle.adapters.aws.lambda_calls import ENDPOINT_ENV, physical_name
from treadle.adapters.aws.lambda_runtime import LambdaRuntime
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.sandbox import LocalSandbox
from treadle.adapters.sandbox.function_runtime import SandboxRuntime
from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.domain.errors import InvalidParameter
from treadle.domain.ports import FunctionRuntime, FunctionVersion, InvocationOutcome

REGION = "us-east-1"
TENANT = "123456789012"  # moto's default account: the role lives there
API_URL = "http://treadle.invalid:9000"
ROLE_NAME = "treadle-test-tenant"
ROLE_ARN = f"arn:aws:iam::{TENANT}:role/{ROLE_NAME}"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)

APP = """
import os

class PaymentDeclined(Exception):
    pass

def handler(event, context):
    return {
        "code": CODE,
        "event": event,
        "endpoint": os.environ.get("AWS_ENDPOINT_URL_LAMBDA"),
        "greeting": os.environ.get("GREETING"),
    }

def fail(event, context):
    raise PaymentDeclined("card expired")
"""


def code_zip(version: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        zf.writestr(info, f"CODE = {version}\n{APP}")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> LocalCodeStore:
    return LocalCodeStore(tmp_path_factory.mktemp("code"))


@pytest.fixture(scope="module")
def sandbox_runtime(
    tmp_path_factory: pytest.TempPathFactory, code: LocalCodeStore
) -> Iterator[SandboxRuntime]:
    work = tmp_path_factory.mktemp("sandbox")
    sandbox = LocalSandbox(work_dir=work / "sb", max_warm_per_function=1)
    sandbox.start()
    try:
        yield SandboxRuntime(
            sandbox=sandbox,
            code=code,
            logs=SqliteLogStore(work / "logs.db"),
            platform_env={ENDPOINT_ENV: API_URL},
        )
    finally:
        sandbox.close()


def version_of(
    code: LocalCodeStore,
    code_version: int,
    *,
    name: str = "pay",
    version: str = "1",
    handler: str = "app.handler",
    environment: dict[str, str] | None = None,
) -> FunctionVersion:
    zip_bytes = code_zip(code_version)
    key = code.put(zip_bytes)
    return FunctionVersion(
        tenant=TENANT,
        function_name=name,
        version=version,
        function_arn=f"arn:aws:lambda:{REGION}:{TENANT}:function:{name}",
        handler=handler,
        timeout_s=10,
        environment={"GREETING": "hi"} if environment is None else environment,
        code_sha256=base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode(),
        code_size=len(zip_bytes),
        code_key=key,
        last_modified_ms=1_700_000_000_000,
        revision_id=f"rev-{code_version}-{version}-{handler}",
    )


class Recording:
    """moto's Lambda client, with the calls that change something recorded.

    `fail_create` makes CreateFunction fail first with errors given as (code, message).
    """

    WRITES = ("create_function", "update_function_code", "update_function_configuration",
              "publish_version", "create_alias")  # fmt: skip

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[str] = []
        self.fail_create: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name not in self.WRITES:
            return attr

        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            if name == "create_function" and self.fail_create:
                code, message = self.fail_create.pop(0)
                raise ClientError({"Error": {"Code": code, "Message": message}}, "CreateFunction")
            return attr(**kwargs)

        return call


@dataclass
class Aws:
    lam: Any  # moto's client
    client: Recording
    sleeps: list[float] = field(default_factory=list)

    def runtime(self, code: LocalCodeStore, invoker: Any = None, **kwargs: Any) -> LambdaRuntime:
        return LambdaRuntime(
            self.client,  # type: ignore[arg-type]
            stage="test",
            role_arn=ROLE_ARN,
            code=code,
            api_url=API_URL,
            invoker=invoker,
            sleep=self.sleeps.append,
            **kwargs,
        )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL_IAM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    try:
        boto3.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=TRUST)
        lam = boto3.client("lambda", region_name=REGION)
        yield Aws(lam, Recording(lam))
    finally:
        mock.__exit__(None, None, None)


@dataclass
class Subject:
    kind: str
    runtime: FunctionRuntime
    aws: Aws | None = None


@pytest.fixture(params=["sandbox", "lambda"])
def subject(
    request: pytest.FixtureRequest,
    sandbox_runtime: SandboxRuntime,
    code: LocalCodeStore,
) -> Subject:
    if request.param == "sandbox":
        return Subject("sandbox", sandbox_runtime)
    aws: Aws = request.getfixturevalue("aws")
    return Subject("lambda", aws.runtime(code, invoker=sandbox_runtime.invoke), aws)


def call(runtime: FunctionRuntime, fn: FunctionVersion, event: Any = None) -> InvocationOutcome:
    return runtime.invoke(fn, json.dumps(event or {}).encode(), str(uuid.uuid4()))


def result(outcome: InvocationOutcome) -> Any:
    assert outcome.error is None, outcome.error
    assert outcome.payload is not None
    return json.loads(outcome.payload)


# -- the contract ----------------------------------------------------------------------


def test_one_version_invoked_twice_gives_the_same_result(
    subject: Subject, code: LocalCodeStore
) -> None:
    fn = version_of(code, 1)
    first = call(subject.runtime, fn, {"n": 1})
    second = call(subject.runtime, fn, {"n": 1})
    assert (
        result(first)
        == result(second)
        == {
            "code": 1,
            "event": {"n": 1},
            "endpoint": API_URL,
            "greeting": "hi",
        }
    )
    assert first.request_id != second.request_id
    assert first.started_ms <= first.ended_ms
    if subject.aws is not None:
        # Deployed once: the second invocation made no change to Lambda.
        assert subject.aws.client.calls == ["create_function", "publish_version", "create_alias"]


def test_new_code_runs_in_a_new_version_and_the_old_one_keeps_its_code(
    subject: Subject, code: LocalCodeStore
) -> None:
    v1, v2 = version_of(code, 1, version="1"), version_of(code, 2, version="2")
    assert result(call(subject.runtime, v1))["code"] == 1
    assert result(call(subject.runtime, v2))["code"] == 2
    assert result(call(subject.runtime, v1))["code"] == 1
    if subject.aws is not None:
        assert isinstance(subject.runtime, LambdaRuntime)
        lam, name = subject.aws.lam, subject.runtime.name_of(v1)
        one, two = subject.runtime.deploy(v1), subject.runtime.deploy(v2)
        assert one.version != two.version
        assert lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == v2.code_sha256
        old = lam.get_function(FunctionName=name, Qualifier=one.version)["Configuration"]
        assert old["CodeSha256"] == v1.code_sha256
        assert subject.aws.client.calls.count("update_function_code") == 1


def test_a_handler_error_has_the_lambda_error_shape(subject: Subject, code: LocalCodeStore) -> None:
    outcome = call(subject.runtime, version_of(code, 1, handler="app.fail"))
    assert outcome.payload is None and outcome.error is not None
    assert outcome.error["errorType"] == "PaymentDeclined"
    assert outcome.error["errorMessage"] == "card expired"
    assert isinstance(outcome.error["stackTrace"], list) and outcome.error["stackTrace"]


# -- Lambda specifics ------------------------------------------------------------------


def test_names_fit_64_characters_and_are_deterministic() -> None:
    assert physical_name("dev", TENANT, "pay") == f"treadle-dev-{TENANT}-pay"
    longest = "x" * 64
    a = physical_name("abcdefghijkl", TENANT, longest)
    b = physical_name("abcdefghijkl", TENANT, longest[:-1] + "y")
    assert len(a) == len(b) == 64
    assert a == physical_name("abcdefghijkl", TENANT, longest)
    assert a != b and a[:-11] == b[:-11]  # same head, told apart by the hash
    assert a.startswith(f"treadle-abcdefghijkl-{TENANT}-xxx")
    fits = "f" * (64 - len(f"treadle-dev-{TENANT}-"))
    assert physical_name("dev", TENANT, fits) == f"treadle-dev-{TENANT}-{fits}"
    assert len(physical_name("dev", TENANT, fits + "g")) == 64
    assert physical_name("dev", TENANT, fits + "g") != physical_name(
        "dev", "210987654321", fits + "g"
    )
    for stage, tenant in (("Dev", TENANT), ("a-b", TENANT), ("dev", "t1"), ("dev", "1-2")):
        with pytest.raises(ValueError):
            physical_name(stage, tenant, "pay")


def test_a_long_function_name_deploys_under_its_fitted_name(
    aws: Aws, code: LocalCodeStore, sandbox_runtime: SandboxRuntime
) -> None:
    runtime = aws.runtime(code, invoker=sandbox_runtime.invoke)
    fn = version_of(
        code, 1, name="a-function-name-much-longer-than-what-lambda-accepts-after-prefix"
    )
    assert result(call(runtime, fn))["code"] == 1
    name = runtime.name_of(fn)
    assert len(name) == 64
    assert aws.lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def test_another_process_reuses_the_deployed_version_without_uploading(
    aws: Aws, code: LocalCodeStore, sandbox_runtime: SandboxRuntime
) -> None:
    v1, v2 = version_of(code, 1), version_of(code, 2, version="2")
    first = aws.runtime(code, invoker=sandbox_runtime.invoke)
    one, two = first.deploy(v1), first.deploy(v2)
    aws.client.calls.clear()
    cold = aws.runtime(code, invoker=sandbox_runtime.invoke)  # a fresh orchestrator
    assert cold.deploy(v1) == one and cold.deploy(v2) == two
    assert aws.client.calls == []  # found by alias: no upload, no publish
    assert result(call(cold, v1))["code"] == 1


def test_a_configuration_change_publishes_a_version_without_uploading_code(
    aws: Aws, code: LocalCodeStore
) -> None:
    runtime = aws.runtime(code)
    base = version_of(code, 1)
    changed = version_of(
        code, 1, version="2", environment={"GREETING": "hello", "AWS_REGION": "eu-west-1"}
    )
    one = runtime.deploy(base)
    aws.client.calls.clear()
    two = runtime.deploy(changed)
    assert two.version != one.version
    assert aws.client.calls == ["update_function_configuration", "publish_version", "create_alias"]
    config = aws.lam.get_function_configuration(FunctionName=two.name, Qualifier=two.version)
    # Lambda's reserved variables are its own; the SDK is pointed at Treadle.
    assert config["Environment"]["Variables"] == {"GREETING": "hello", ENDPOINT_ENV: API_URL}
    assert config["Role"] == ROLE_ARN and config["Handler"] == "app.handler"


def test_create_is_retried_while_the_new_role_propagates(
    aws: Aws, code: LocalCodeStore, sandbox_runtime: SandboxRuntime
) -> None:
    refused = (
        "InvalidParameterValueException",
        "The role defined for the function cannot be assumed by Lambda.",
    )
    aws.client.fail_create = [refused, refused]
    runtime = aws.runtime(code, invoker=sandbox_runtime.invoke)
    assert result(call(runtime, version_of(code, 1)))["code"] == 1
    assert aws.client.calls.count("create_function") == 3
    assert aws.sleeps == [1.0, 2.0]


def test_a_role_that_never_propagates_fails_the_deploy(aws: Aws, code: LocalCodeStore) -> None:
    # moto refuses a role that does not exist with the very propagation message.
    runtime = LambdaRuntime(
        aws.client,  # type: ignore[arg-type]
        stage="test",
        role_arn=f"arn:aws:iam::{TENANT}:role/not-there",
        code=code,
        api_url=API_URL,
        sleep=aws.sleeps.append,
        role_retry_delays_s=(0.5, 0.5),
    )
    with pytest.raises(InvalidParameter, match="cannot be assumed"):
        runtime.deploy(version_of(code, 1))
    assert aws.sleeps == [0.5, 0.5]


class CannedInvoke:
    """moto's client, whose Invoke answers as Lambda would (moto cannot run code)."""

    def __init__(self, real: Any, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.real = real
        self.answer = answer
        self.invokes: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invokes.append(kwargs)
        # Lambda's own check first: the qualified version must exist.
        self.real.get_function(FunctionName=kwargs["FunctionName"], Qualifier=kwargs["Qualifier"])
        return self.answer(kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _response(body: Any, function_error: str | None = None) -> dict[str, Any]:
    raw = json.dumps(body).encode()
    response: dict[str, Any] = {
        "StatusCode": 200,
        "Payload": StreamingBody(io.BytesIO(raw), len(raw)),
    }
    if function_error:
        response["FunctionError"] = function_error
    return response


def test_invoke_responses_map_to_outcomes(aws: Aws, code: LocalCodeStore) -> None:
    answers = iter(
        [
            _response({"Status": "SUCCEEDED"}),
            _response(
                {"errorType": "PaymentDeclined", "errorMessage": "card expired", "stackTrace": []},
                "Unhandled",
            ),
            _response(
                {"errorMessage": "2024-01-01T00:00:00Z abc Task timed out after 10.00 seconds"},
                "Unhandled",
            ),
            _response("not an error object", "Unhandled"),
        ]
    )
    client = CannedInvoke(aws.lam, lambda _: next(answers))
    runtime = LambdaRuntime(client, stage="test", role_arn=ROLE_ARN, code=code, api_url=API_URL)  # type: ignore[arg-type]
    fn = version_of(code, 1)
    ok = runtime.invoke(fn, b'{"x": 1}', "req-1")
    assert (
        ok.payload == b'{"Status": "SUCCEEDED"}' and ok.error is None and ok.request_id == "req-1"
    )
    deployed = runtime.deploy(fn)
    assert client.invokes[0] == {
        "FunctionName": deployed.name,
        "Qualifier": deployed.version,
        "InvocationType": "RequestResponse",
        "Payload": b'{"x": 1}',
    }
    failed = runtime.invoke(fn, b"{}", "req-2")
    assert failed.payload is None and failed.error == {
        "errorType": "PaymentDeclined",
        "errorMessage": "card expired",
        "stackTrace": [],
    }
    timed_out = runtime.invoke(fn, b"{}", "req-3").error
    assert timed_out == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": "RequestId: req-3 Error: Task timed out after 10.00 seconds",
    }
    assert runtime.invoke(fn, b"{}", "req-4").error == {
        "errorType": "Runtime.InvalidError",
        "errorMessage": "malformed error payload",
    }


def test_a_function_deleted_behind_its_back_is_deployed_again(
    aws: Aws, code: LocalCodeStore
) -> None:
    client = CannedInvoke(aws.lam, lambda _: _response({"ok": True}))
    runtime = LambdaRuntime(client, stage="test", role_arn=ROLE_ARN, code=code, api_url=API_URL)  # type: ignore[arg-type]
    fn = version_of(code, 1)
    assert runtime.invoke(fn, b"{}", "r1").payload == b'{"ok": true}'
    aws.lam.delete_function(FunctionName=runtime.name_of(fn))
    assert runtime.invoke(fn, b"{}", "r2").payload == b'{"ok": true}'
    assert (
        aws.lam.get_function(FunctionName=runtime.name_of(fn))["Configuration"]["CodeSha256"]
        == fn.code_sha256
    )
