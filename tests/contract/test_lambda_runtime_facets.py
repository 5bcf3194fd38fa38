"""Tenant Lambdas on AWS mount their own tenant's facets: against moto's Lambda and EFS,
what `LambdaRuntime` deploys carries the tenant's access point (never another's), the
VPC it is mounted from and the mount path in the environment; the mount takes part in
the reuse of deployed versions. moto's Lambda keeps no FileSystemConfigs, so what was
sent is read from the calls themselves."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from treadle.adapters.aws.efs_facets import EfsFacetStore
from treadle.adapters.aws.lambda_mounts import TenantMount
from treadle.adapters.aws.lambda_runtime import LambdaRuntime
from treadle.adapters.local.code import LocalCodeStore
from treadle.domain.ports import FunctionVersion
from treadle.settings import ENV_FACETS_MOUNT_PATH

REGION = "us-east-1"
ACCOUNT = "123456789012"
OTHER = "210987654321"
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
SUBNETS, GROUPS = ("subnet-aaa", "subnet-bbb"), ("sg-facets",)


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("app.py", date_time=(2024, 1, 1, 0, 0, 0))
        zf.writestr(info, "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def _version(code: LocalCodeStore, tenant: str) -> FunctionVersion:
    zip_bytes = _zip()
    return FunctionVersion(
        tenant=tenant,
        function_name="pay",
        version="1",
        function_arn=f"arn:aws:lambda:{REGION}:{tenant}:function:pay",
        handler="app.handler",
        timeout_s=10,
        environment={ENV_FACETS_MOUNT_PATH: "/mnt/elsewhere"},  # the platform's wins
        code_sha256=base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode(),
        code_size=len(zip_bytes),
        code_key=code.put(zip_bytes),
        last_modified_ms=1_700_000_000_000,
        revision_id="rev-1",
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, EfsFacetStore]]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL_EFS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        boto3.client("iam").create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=TRUST)
        efs = boto3.client("efs", region_name=REGION)
        fs = efs.create_file_system(CreationToken="facets")["FileSystemId"]
        store = EfsFacetStore(efs, file_system_id=fs, mount_dir=tmp_path / "mnt", stage="test")
        yield boto3.client("lambda", region_name=REGION), store


def _runtime(lam: Sent, code: LocalCodeStore, store: EfsFacetStore, path: str) -> LambdaRuntime:
    def mount(tenant: str) -> TenantMount:
        return TenantMount(store.access_point(tenant), path, SUBNETS, GROUPS, ENV_FACETS_MOUNT_PATH)

    return LambdaRuntime(
        lam,
        stage="test",
        role_arn=ROLE_ARN,
        code=code,
        api_url="https://api.treadle.invalid",
        mounts=mount,
        sleep=lambda _s: None,
    )


class Sent:
    """moto's client, keeping the configuration last sent for each function."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.configs: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name not in ("create_function", "update_function_configuration"):
            return attr

        def call(**kwargs: Any) -> Any:
            self.configs[kwargs["FunctionName"]] = kwargs
            return attr(**kwargs)

        return call


def _config(lam: Sent, runtime: LambdaRuntime, fn: FunctionVersion) -> dict[str, Any]:
    return lam.configs[runtime.deploy(fn).name]


def test_a_tenant_lambda_mounts_its_own_tenants_access_point_from_the_vpc(
    aws: tuple[Any, EfsFacetStore], tmp_path: Path
) -> None:
    lam, store = Sent(aws[0]), aws[1]
    code = LocalCodeStore(tmp_path / "code")
    runtime = _runtime(lam, code, store, "/mnt/facets")
    mine = _config(lam, runtime, _version(code, ACCOUNT))
    theirs = _config(lam, runtime, _version(code, OTHER))
    assert [(c["Arn"], c["LocalMountPath"]) for c in mine["FileSystemConfigs"]] == [
        (store.access_point(ACCOUNT), "/mnt/facets")
    ]
    assert theirs["FileSystemConfigs"][0]["Arn"] == store.access_point(OTHER)
    assert store.access_point(OTHER) != store.access_point(ACCOUNT)
    assert sorted(mine["VpcConfig"]["SubnetIds"]) == sorted(SUBNETS)
    assert mine["VpcConfig"]["SecurityGroupIds"] == list(GROUPS)
    assert mine["Environment"]["Variables"][ENV_FACETS_MOUNT_PATH] == "/mnt/facets"
    # The tenant's access point is rooted at its own directory: nothing else is mounted.
    efs = boto3.client("efs", region_name=REGION)
    roots = {
        p["AccessPointArn"]: p["RootDirectory"]["Path"]
        for p in efs.describe_access_points()["AccessPoints"]
    }
    assert roots[mine["FileSystemConfigs"][0]["Arn"]] == f"/facets/{ACCOUNT}"


def test_the_mount_is_part_of_the_deployed_configuration_that_is_reused(
    aws: tuple[Any, EfsFacetStore], tmp_path: Path
) -> None:
    lam, store = Sent(aws[0]), aws[1]
    code = LocalCodeStore(tmp_path / "code")
    fn = _version(code, ACCOUNT)
    first = _runtime(lam, code, store, "/mnt/facets").deploy(fn)
    assert _runtime(lam, code, store, "/mnt/facets").deploy(fn) == first  # found by alias
    moved = _runtime(lam, code, store, "/mnt/data")
    second = moved.deploy(fn)
    assert second.version != first.version
    assert _config(lam, moved, fn)["FileSystemConfigs"][0]["LocalMountPath"] == "/mnt/data"
