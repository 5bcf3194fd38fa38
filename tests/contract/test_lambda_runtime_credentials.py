"""Tenant Lambdas on AWS sign their checkpoints with their tenant's sandbox key.

Against moto's Lambda control plane: what `LambdaRuntime` deploys carries the wrapper
variable, the key of the function's own tenant (never another's) and the platform's
tenant layer; layers and that environment take part in the reuse of deployed versions.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from treadle.adapters.aws.lambda_calls import ENDPOINT_ENV
from treadle.adapters.aws.lambda_runtime import LambdaRuntime
from treadle.adapters.aws.tenant_credentials import (
    EXEC_WRAPPER_ENV,
    SANDBOX_KEY_ID_ENV,
    SANDBOX_SECRET_ENV,
    WRAPPER_PATH,
)
from treadle.adapters.local.code import LocalCodeStore
from treadle.domain.ports import FunctionVersion
from treadle.tenancy.sandbox_keys import SandboxKeys

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's: the role and the layer live there
OTHER = "210987654321"
API_URL = "https://api.treadle.invalid"
ROLE_NAME = "treadle-test-tenant"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
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
KEYS = SandboxKeys(b"platform token secret")


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


class Recording:
    """moto's client, with the calls that change something recorded."""

    WRITES = ("create_function", "update_function_code", "update_function_configuration",
              "publish_version", "create_alias")  # fmt: skip

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name not in self.WRITES:
            return attr

        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            return attr(**kwargs)

        return call


@pytest.fixture
def lam(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL_IAM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        boto3.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=TRUST)
        yield boto3.client("lambda", region_name=REGION)


@pytest.fixture
def code(tmp_path: Any) -> LocalCodeStore:
    return LocalCodeStore(tmp_path / "code")


def _layer(lam: Any, body: str) -> str:
    published = lam.publish_layer_version(
        LayerName="treadle-test-tenant",
        Content={"ZipFile": _zip({"bin/treadle-sandbox-credentials": body})},
        CompatibleRuntimes=["python3.11", "python3.12"],
    )
    return str(published["LayerVersionArn"])


def _version(
    code: LocalCodeStore, tenant: str = ACCOUNT, environment: dict[str, str] | None = None
) -> FunctionVersion:
    zip_bytes = _zip({"app.py": "def handler(event, context):\n    return event\n"})
    return FunctionVersion(
        tenant=tenant,
        function_name="pay",
        version="1",
        function_arn=f"arn:aws:lambda:{REGION}:{tenant}:function:pay",
        handler="app.handler",
        timeout_s=10,
        environment=environment or {},
        code_sha256=base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode(),
        code_size=len(zip_bytes),
        code_key=code.put(zip_bytes),
        last_modified_ms=1_700_000_000_000,
        revision_id="rev-1",
    )


def _runtime(client: Any, code: LocalCodeStore, layers: list[str]) -> LambdaRuntime:
    return LambdaRuntime(
        client,
        stage="test",
        role_arn=ROLE_ARN,
        code=code,
        api_url=API_URL,
        sandbox_credentials=KEYS.for_tenant,
        layers=layers,
        sleep=lambda _s: None,
    )


def _deployed(lam: Any, runtime: LambdaRuntime, fn: FunctionVersion) -> dict[str, Any]:
    deployment = runtime.deploy(fn)
    config: dict[str, Any] = lam.get_function_configuration(
        FunctionName=deployment.name, Qualifier=deployment.version
    )
    return config


def test_a_tenant_lambda_gets_the_wrapper_its_own_key_and_the_layer(
    lam: Any, code: LocalCodeStore
) -> None:
    layer = _layer(lam, '#!/bin/bash\nexec "$@"\n')
    runtime = _runtime(lam, code, [layer])
    # A tenant cannot point the wrapper elsewhere or pass another key: the platform's win.
    sneaky = {
        "GREETING": "hi",
        EXEC_WRAPPER_ENV: "/var/task/mine",
        SANDBOX_KEY_ID_ENV: "AKIAOTHER",
        SANDBOX_SECRET_ENV: "guess",
    }
    mine = _deployed(lam, runtime, _version(code, environment=sneaky))
    key_id, secret = KEYS.for_tenant(ACCOUNT)
    assert mine["Environment"]["Variables"] == {
        "GREETING": "hi",
        ENDPOINT_ENV: API_URL,
        EXEC_WRAPPER_ENV: WRAPPER_PATH,
        SANDBOX_KEY_ID_ENV: key_id,
        SANDBOX_SECRET_ENV: secret,
    }
    assert [entry["Arn"] for entry in mine["Layers"]] == [layer]
    # The key verifies as this tenant's sandbox, and the other tenant's function has its own.
    found = KEYS.lookup(key_id)
    assert found is not None and found.tenant == ACCOUNT and found.secret == secret
    theirs = _deployed(lam, runtime, _version(code, tenant=OTHER))["Environment"]["Variables"]
    assert theirs[SANDBOX_KEY_ID_ENV] != key_id and theirs[SANDBOX_SECRET_ENV] != secret
    other = KEYS.lookup(theirs[SANDBOX_KEY_ID_ENV])
    assert other is not None and other.tenant == OTHER


def test_without_a_tenant_layer_there_is_no_wrapper_to_point_at(
    lam: Any, code: LocalCodeStore
) -> None:
    config = _deployed(lam, _runtime(lam, code, []), _version(code))
    env = config["Environment"]["Variables"]
    assert EXEC_WRAPPER_ENV not in env  # it would name a file that is not there
    assert env[SANDBOX_KEY_ID_ENV] == KEYS.for_tenant(ACCOUNT)[0]
    assert not config.get("Layers")


def test_layers_are_part_of_the_deployed_configuration_that_is_reused(
    lam: Any, code: LocalCodeStore
) -> None:
    first_layer = _layer(lam, '#!/bin/bash\nexec "$@"\n')
    client = Recording(lam)
    fn = _version(code)
    one = _runtime(client, code, [first_layer]).deploy(fn)
    assert client.calls == ["create_function", "publish_version", "create_alias"]
    client.calls.clear()
    # Another process with the same layer finds the version by its alias: no change.
    assert _runtime(client, code, [first_layer]).deploy(fn) == one
    assert client.calls == []
    # A new layer version (a platform upgrade) publishes a new Lambda version, same code.
    second_layer = _layer(lam, '#!/bin/bash\n# v2\nexec "$@"\n')
    two = _runtime(client, code, [second_layer]).deploy(fn)
    assert two.version != one.version
    assert client.calls == ["update_function_configuration", "publish_version", "create_alias"]
    config = lam.get_function_configuration(FunctionName=two.name, Qualifier=two.version)
    assert [entry["Arn"] for entry in config["Layers"]] == [second_layer]
    old = lam.get_function_configuration(FunctionName=one.name, Qualifier=one.version)
    assert [entry["Arn"] for entry in old["Layers"]] == [first_layer]
