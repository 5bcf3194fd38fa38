"""TreadleStack: one deployable stage of the platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra import facets_iam, names
from infra.api import PublicApi
from infra.facets import Facets
from infra.functions import ORCHESTRATOR_TIMEOUT, PlatformFunctions
from infra.iam import TenantExecutionRole
from infra.storage import Storage
from infra.tenant_layer import TenantLayer


class TreadleStack(Stack):
    """Table, bucket, queue, platform functions, HTTP API and the IAM that ties them.

    Environment-agnostic: account and region are the deploy target's (pseudo parameters).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: str = names.DEFAULT_STAGE,
        dependency_layer_dir: Path | None = None,
        tenant_layer_dir: Path | None = None,
        facets: bool = False,
        **kwargs: Any,
    ) -> None:
        """`facets`: also the VPC, NAT gateway and EFS file system of facets on AWS
        (infra/facets.py; context `treadle:facets`)."""
        super().__init__(scope, id, **kwargs)
        self.stage = names.validate_stage(stage)

        self.storage = Storage(
            self, "Storage", stage=stage, orchestrator_timeout=ORCHESTRATOR_TIMEOUT
        )
        self.tenant = TenantExecutionRole(self, "TenantExecution", stage=stage)
        self.facets = Facets(self, "Facets", stage=stage) if facets else None
        if self.facets is not None:
            facets_iam.allow_tenant(self.tenant.role, self.facets)
        self.tenant_layer = TenantLayer(
            self, "TenantLayer", stage=stage, built_dir=tenant_layer_dir
        )
        self.functions = PlatformFunctions(
            self,
            "Platform",
            stage=stage,
            storage=self.storage,
            tenant_role=self.tenant.role,
            tenant_layer_arn=self.tenant_layer.arn,
            dependency_layer_dir=dependency_layer_dir,
            facets=self.facets,
        )
        self.api = PublicApi(self, "Api", stage=stage, handler=self.functions.api.function)
        # The control plane gives tenant functions this endpoint (AWS_ENDPOINT_URL_LAMBDA)
        # so that the durable SDK inside them checkpoints against Treadle.
        self.functions.add_environment(names.ENV_API_URL, self.api.url)

        CfnOutput(self, names.OUTPUT_API_URL, value=self.api.url)
        CfnOutput(self, names.OUTPUT_TABLE_NAME, value=self.storage.table.table_name)
        CfnOutput(self, names.OUTPUT_BUCKET_NAME, value=self.storage.bucket.bucket_name)
        CfnOutput(self, names.OUTPUT_QUEUE_URL, value=self.storage.queue.queue_url)
        CfnOutput(self, names.OUTPUT_TENANT_ROLE_ARN, value=self.tenant.role.role_arn)
        CfnOutput(self, names.OUTPUT_TENANT_LAYER_ARN, value=self.tenant_layer.arn)
        CfnOutput(
            self,
            names.OUTPUT_ADMIN_SECRET_ARN,
            value=self.storage.admin_secret.secret_arn,
            description="The admin key pair: aws secretsmanager get-secret-value --secret-id",
        )
        if self.facets is not None:
            CfnOutput(
                self,
                names.OUTPUT_FACETS_FILE_SYSTEM_ID,
                value=self.facets.file_system.file_system_id,
                description="Facets on EFS (retained when the stack is deleted)",
            )
