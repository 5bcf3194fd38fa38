"""What the stack gives the platform for tenant credentials, as the API Lambda sees it.

- The admin key comes from the Secrets Manager secret the stack generates (its ARN in
  `TREADLE_ADMIN_SECRET_ARN`), read with the platform's secretsmanager client.
- Tenant Lambdas carry their tenant's sandbox key and the tenant layer, and Treadle's
  GetFunction answers from its own store: the key is never given back to the tenant.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest

from support.lambda_calls import call, create_function
from support.lambda_events import TENANT, LambdaEnv
from treadle import settings
from treadle.adapters.aws.resources import (
    ADMIN_KEY_ID_FIELD,
    ADMIN_SECRET_FIELD,
    read_admin_key,
)
from treadle.adapters.aws.tenant_credentials import (
    EXEC_WRAPPER_ENV,
    SANDBOX_KEY_ID_ENV,
    SANDBOX_SECRET_ENV,
    WRAPPER_PATH,
)
from treadle.entrypoints import runtime
from treadle.platform.aws import derived_admin_key

ADMIN = ("TREADLEADMINTESTKEY", "generated-by-secrets-manager-0123456789ab")


def _admin_secret(env: LambdaEnv, value: str) -> str:
    made = env.clients.secrets.create_secret(Name="admin-key", SecretString=value)
    return str(made["ARN"])


def test_the_admin_key_is_read_from_the_stacks_secret(
    lambda_env: LambdaEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the stack's generateSecretString makes: the template plus the generated field.
    value = json.dumps({ADMIN_KEY_ID_FIELD: ADMIN[0], ADMIN_SECRET_FIELD: ADMIN[1]})
    monkeypatch.setenv(settings.ENV_ADMIN_SECRET_ARN, _admin_secret(lambda_env, value))
    status, _, body = call(lambda_env, "GET", "/v1/tenants", key=ADMIN)
    assert status == 200, body
    assert [t["accountId"] for t in body["tenants"]] == [TENANT]
    # Not the key derived from the token secret any more.
    status, _, _ = call(lambda_env, "GET", "/v1/tenants", key=derived_admin_key(b"k" * 64))
    assert status == 403


def test_a_malformed_admin_secret_is_refused_without_showing_it(lambda_env: LambdaEnv) -> None:
    secrets = lambda_env.clients.secrets
    assert (
        read_admin_key(
            secrets,
            _admin_secret(
                lambda_env, json.dumps({ADMIN_KEY_ID_FIELD: ADMIN[0], ADMIN_SECRET_FIELD: ADMIN[1]})
            ),
        )
        == ADMIN
    )
    for bad in ("not json: s3cr3t", json.dumps({ADMIN_KEY_ID_FIELD: "X"}), json.dumps(["s3cr3t"])):
        arn = str(secrets.create_secret(Name=f"bad-{len(bad)}", SecretString=bad)["ARN"])
        with pytest.raises(ValueError, match=arn) as raised:
            read_admin_key(secrets, arn)
        assert "s3cr3t" not in str(raised.value)


def _layer(env: LambdaEnv) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("bin/treadle-sandbox-credentials", '#!/bin/bash\nexec "$@"\n')
    lam = env.clients.lambda_
    published = lam.publish_layer_version(
        LayerName="tenant", Content={"ZipFile": buffer.getvalue()}
    )
    return str(published["LayerVersionArn"])


def test_get_function_never_shows_the_sandbox_key_the_lambda_carries(
    lambda_env: LambdaEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = _layer(lambda_env)
    monkeypatch.setenv(settings.ENV_TENANT_LAYER_ARN, layer)
    create_function(lambda_env, "wf")
    platform = runtime.platform()
    fn = platform.functions_store.get(TENANT, "wf")
    deployment = platform.runtime.deploy(fn)  # what the orchestrator does before invoking
    real: dict[str, Any] = lambda_env.clients.lambda_.get_function_configuration(
        FunctionName=deployment.name, Qualifier=deployment.version
    )
    variables = real["Environment"]["Variables"]
    key_id, secret = platform.sandbox_keys.for_tenant(TENANT)
    # The real Lambda has the key, the wrapper and the layer...
    assert variables[SANDBOX_KEY_ID_ENV] == key_id and variables[SANDBOX_SECRET_ENV] == secret
    assert variables[EXEC_WRAPPER_ENV] == WRAPPER_PATH
    assert [entry["Arn"] for entry in real["Layers"]] == [layer]
    # ...and nothing the tenant reads through Treadle shows any of it.
    for path in (
        "/2015-03-31/functions/wf",
        "/2015-03-31/functions/wf/configuration",
        "/2015-03-31/functions/",
    ):
        status, _, body = call(lambda_env, "GET", path)
        assert status == 200, body
        text = json.dumps(body)
        for leaked in (secret, key_id, SANDBOX_SECRET_ENV, WRAPPER_PATH):
            assert leaked not in text, (path, leaked)
