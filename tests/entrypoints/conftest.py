"""The platform Lambdas' handlers, driven with recorded events against moto.

Each test gets a fresh moto account (`mock_aws`), the stack's resources in it (table,
bucket, queue, tenant role, token secret), the environment the stack gives the
functions, a tenant with a key, and a platform built anew by the handlers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from support.lambda_events import API_HOST, REGION, STAGE, TENANT, Context, LambdaEnv
from treadle import settings as s
from treadle.adapters.aws.dynamodb_tenants import DynamoTenantStore
from treadle.adapters.aws.resources import AwsClients, provision
from treadle.entrypoints import runtime
from treadle.tenancy.admin import TenantAdmin


@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaEnv]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA", s.ENV_BACKEND, "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    with mock_aws():
        clients = AwsClients.create(REGION)
        table, bucket = f"treadle-{STAGE}", f"treadle-{STAGE}-artifacts"
        made = provision(
            clients,
            table=table,
            bucket=bucket,
            region=REGION,
            stage=STAGE,
            queue_url=None,
            tenant_role_arn=None,
        )
        secret = clients.secrets.create_secret(Name="token-key", SecretString="k" * 64)
        # What infra/functions.py gives the platform functions.
        for name, value in {
            s.ENV_STAGE: STAGE,
            s.ENV_REGION: REGION,
            s.ENV_TABLE: table,
            s.ENV_BUCKET: bucket,
            s.ENV_QUEUE_URL: made.queue_url,
            s.ENV_TENANT_ROLE_ARN: made.tenant_role_arn,
            s.ENV_TOKEN_SECRET_ARN: secret["ARN"],
            s.ENV_API_URL: f"https://{API_HOST}",
            s.ENV_DATA_DIR: str(tmp_path / "lambda-tmp"),
            # moto runs no code: tenant code runs in the local sandbox, as emulated.
            s.ENV_FUNCTION_RUNTIME: "sandbox",
        }.items():
            monkeypatch.setenv(name, value)
        admin = TenantAdmin(DynamoTenantStore(clients.dynamodb, table), _Clock())
        _, key = admin.create_tenant("acme", account_id=TENANT)
        env = LambdaEnv(
            clients, made.queue_url, table, (key.access_key_id, key.secret.get_secret_value())
        )
        try:
            yield env
        finally:
            runtime.reset()


class _Clock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@pytest.fixture
def context() -> Context:
    return Context()
