"""The layer every tenant Lambda gets: the durable SDK and the credential wrapper.

Tenant functions are created at runtime by the platform (`lambda_runtime.py`), which
attaches this layer by its version ARN (`TREADLE_TENANT_LAYER_ARN`) and points
`AWS_LAMBDA_EXEC_WRAPPER` at the wrapper in it (`/opt/bin/...`, see
`functions/treadle/adapters/aws/tenant_credentials.py` for why a wrapper at all).

Contents: `infra/layer/build.py --target tenant` writes `build/tenant-layer` with
`python/` (aws-durable-execution-sdk-python and the boto3 it needs, pure-Python wheels
only, so one layer serves both architectures) and `bin/` (the wrapper, copied from
`infra/layer/tenant/bin`). Without that build the layer holds the wrapper only, straight
from the source tree, and synth warns: tenant code would then have to bundle the SDK.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from treadle.app.functions import SUPPORTED_RUNTIMES

TENANT_LAYER_SOURCE = Path(__file__).resolve().parent / "layer" / "tenant"
# Every runtime a tenant function may declare: the wheels are pure Python.
TENANT_RUNTIMES = [
    lambda_.Runtime(name, lambda_.RuntimeFamily.PYTHON) for name in sorted(SUPPORTED_RUNTIMES)
]
TENANT_ARCHITECTURES = [lambda_.Architecture.X86_64, lambda_.Architecture.ARM_64]


class TenantLayer(Construct):
    def __init__(self, scope: Construct, id: str, *, stage: str, built_dir: Path | None) -> None:
        super().__init__(scope, id)
        source = TENANT_LAYER_SOURCE
        if built_dir is not None and (built_dir / "python").is_dir():
            source = built_dir
        else:
            Annotations.of(self).add_warning_v2(
                "treadle:no-tenant-sdk-layer",
                "The tenant layer has the credential wrapper but not the durable SDK: run "
                "`.venv/bin/python infra/layer/build.py --target tenant` before deploying.",
            )
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(str(source)),
            compatible_runtimes=TENANT_RUNTIMES,
            compatible_architectures=TENANT_ARCHITECTURES,
            description=f"Treadle {stage}: durable SDK and credential wrapper for tenant functions",
        )

    @property
    def arn(self) -> str:
        return self.layer.layer_version_arn
