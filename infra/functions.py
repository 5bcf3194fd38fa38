"""The platform Lambdas: API, orchestrator (SQS consumer) and timer sweep (every minute).

Code: the `functions/` source root is the asset, as is (no bundling: bundling needs
Docker, which CI does not have). Third-party dependencies (pydantic, dulwich, a recent
boto3, Powertools...) come from a layer built by `infra/layer/build.py` (see
`infra/layer/README.md`). The lifecycle files ship inside the package
(`treadle/domain/statemachine/`, package data), so the asset carries them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import facets_iam, names
from infra import iam as grants
from infra.facets import Facets
from infra.storage import Storage

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64

# API Gateway HTTP APIs give up after 30 s.
API_TIMEOUT = Duration.seconds(29)
# A drive invokes the pinned tenant version synchronously, and a Lambda may run 15 min.
ORCHESTRATOR_TIMEOUT = Duration.minutes(15)
SWEEP_TIMEOUT = Duration.seconds(60)
SWEEP_RATE = Duration.minutes(1)
ORCHESTRATOR_BATCH_SIZE = 10
LOG_RETENTION = logs.RetentionDays.ONE_MONTH

# Kept out of the code asset: caches and build metadata.
ASSET_EXCLUDES = [
    "**/__pycache__",
    "**/*.pyc",
    "*.egg-info",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
]


@dataclass(frozen=True)
class _Spec:
    id: str
    role_name: str
    handler: str
    timeout: Duration
    memory_mb: int
    description: str


class PlatformFunctions(Construct):
    """The three platform functions, their roles and log groups, the queue and the schedule."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        stage: str,
        storage: Storage,
        tenant_role: iam.IRole,
        tenant_layer_arn: str,
        dependency_layer_dir: Path | None,
        facets: Facets | None = None,
    ) -> None:
        """`facets`: the VPC and file system of facets on AWS, when the stack has them."""
        super().__init__(scope, id)
        self._stage = stage
        self._code = lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=ASSET_EXCLUDES)
        self._layers = self._make_layers(dependency_layer_dir)
        self._environment: dict[str, str] = {
            names.ENV_STAGE: stage,
            names.ENV_REGION: Stack.of(self).region,
            names.ENV_TABLE: storage.table.table_name,
            names.ENV_BUCKET: storage.bucket.bucket_name,
            names.ENV_QUEUE_URL: storage.queue.queue_url,
            names.ENV_TENANT_ROLE_ARN: tenant_role.role_arn,
            names.ENV_TENANT_FUNCTION_PREFIX: names.tenant_function_prefix(stage),
            names.ENV_TOKEN_SECRET_ARN: storage.token_secret.secret_arn,
            names.ENV_TENANT_LAYER_ARN: tenant_layer_arn,
            names.ENV_DATA_DIR: names.LAMBDA_DATA_DIR,
            names.ENV_POWERTOOLS_SERVICE_NAME: names.POWERTOOLS_SERVICE_NAME,
            names.ENV_POWERTOOLS_METRICS_NAMESPACE: names.POWERTOOLS_METRICS_NAMESPACE,
            names.ENV_POWERTOOLS_LOG_LEVEL: "INFO",
        }

        # With facets, the API serves /v1/facets: it runs in the VPC with the facets root
        # mounted. The orchestrator deploys tenant functions too (a pinned version may have
        # to be deployed before it is invoked), so it gets the same settings (their
        # configuration must be the same from either, or each would undo the other's) and
        # makes access points, but stays out of the VPC: its synchronous invokes last up
        # to 15 minutes, and a NAT gateway drops a connection idle for 350 s. The sweep
        # neither deploys nor reads facets.
        self.api = self._function(
            _Spec("Api", "api", names.API_HANDLER, API_TIMEOUT, 1024, "HTTP API"), facets
        )
        self.orchestrator = self._function(
            _Spec(
                "Orchestrator",
                "orchestrator",
                names.ORCHESTRATOR_HANDLER,
                ORCHESTRATOR_TIMEOUT,
                1024,
                "drives executions from the work queue",
            )
        )
        self.sweep = self._function(
            _Spec("Sweep", "sweep", names.SWEEP_HANDLER, SWEEP_TIMEOUT, 256, "timer sweep")
        )

        # Both the API (CreateFunction, UpdateFunctionCode, PublishVersion, Invoke of a
        # non-durable function) and the orchestrator (invoking the pinned version, which the
        # FunctionRuntime may have to deploy first) act on tenant functions; the sweep never.
        deployer = grants.DeployerPolicy(
            self,
            "Deployer",
            stage=stage,
            tenant_role=tenant_role,
            tenant_layer_arn=tenant_layer_arn,
            configuration_conditions=facets_iam.deployer_conditions(facets) if facets else None,
            statements=facets_iam.deployer_statements(facets, self) if facets else (),
        )
        deployer.attach_to([self.api.role, self.orchestrator.role])
        self.deployer_policy = deployer.policy

        for fn in (self.api, self.orchestrator):
            grants.allow_table(fn.role, storage.table)
            grants.allow_bucket(fn.role, storage.bucket)
            grants.allow_send(fn.role, storage.queue)
            grants.allow_token_key(fn.role, storage.token_secret)
        grants.allow_tenant_log_reads(self.api.role, stage)
        # Only the API serves /v1/tenants: the others derive an admin key they never use.
        self.api.function.add_environment(
            names.ENV_ADMIN_SECRET_ARN, storage.admin_secret.secret_arn
        )
        grants.allow_admin_key(self.api.role, storage.admin_secret)
        # Answer a synchronous invoke before API Gateway's integration timeout does.
        self.api.function.add_environment(
            names.ENV_SYNC_INVOKE_WAIT, str(names.API_SYNC_INVOKE_WAIT_S)
        )
        if facets is not None:
            facets_iam.allow_root_mount(self.api.role, facets)
            for fn in (self.api, self.orchestrator):
                facets_iam.allow_access_points(fn.role, facets)
                for key, value in facets.environment().items():
                    fn.function.add_environment(key, value)
        grants.allow_table(self.sweep.role, storage.table)
        grants.allow_send(self.sweep.role, storage.queue)
        # The sweep builds the same platform (it starts scheduled executions), which reads
        # the checkpoint-token key at start-up.
        grants.allow_token_key(self.sweep.role, storage.token_secret)
        # Garbage collection (docs/operating.md) repacks and deletes Git objects and
        # deletes code packages no version references (the API does too, for an admin's
        # run); both count the references of older function items once, by a Scan.
        grants.allow_git_objects(self.sweep.role, storage.bucket)
        grants.allow_code_deletes(self.sweep.role, storage.bucket)
        for fn in (self.api, self.sweep):
            grants.allow_table_scan(fn.role, storage.table)
        # The sweep relays status changes (docs/notifications.md) to the account's default
        # bus, where Lambda puts its own durable executions' status changes.
        bus = events.EventBus.from_event_bus_name(self, "DefaultBus", "default")
        self.sweep.function.add_environment(names.ENV_EVENT_BUS, bus.event_bus_name)
        grants.allow(self.sweep.role, "StatusEvents", grants.EVENT_PUT_ACTIONS, [bus.event_bus_arn])

        # Partial batch responses: one failed execution does not redeliver the others.
        self.orchestrator.function.add_event_source(
            event_sources.SqsEventSource(
                storage.queue,
                batch_size=ORCHESTRATOR_BATCH_SIZE,
                report_batch_item_failures=True,
            )
        )
        # A missed sweep is harmless (the next one runs a minute later): no retries.
        self.schedule = events.Rule(
            self,
            "SweepSchedule",
            description=f"Treadle {stage}: wake due timers",
            schedule=events.Schedule.rate(SWEEP_RATE),
            targets=[
                targets.LambdaFunction(
                    self.sweep.function,
                    retry_attempts=0,
                    max_event_age=Duration.minutes(1),
                )
            ],
        )

    def add_environment(self, key: str, value: str) -> None:
        for fn in (self.api, self.orchestrator, self.sweep):
            fn.function.add_environment(key, value)

    def _make_layers(self, dependency_layer_dir: Path | None) -> list[lambda_.ILayerVersion]:
        layers: list[lambda_.ILayerVersion] = []
        if dependency_layer_dir is not None and dependency_layer_dir.is_dir():
            layers.append(
                lambda_.LayerVersion(
                    self,
                    "Dependencies",
                    code=lambda_.Code.from_asset(str(dependency_layer_dir)),
                    compatible_architectures=[ARCHITECTURE],
                    compatible_runtimes=[RUNTIME],
                    description="Treadle third-party dependencies (infra/layer/build.py)",
                )
            )
        else:
            Annotations.of(self).add_warning_v2(
                "treadle:no-dependency-layer",
                "No dependency layer: run `.venv/bin/python infra/layer/build.py` before "
                "deploying, or the platform functions cannot import their dependencies.",
            )
        return layers

    def _function(self, spec: _Spec, facets: Facets | None = None) -> _PlatformFunction:
        return _PlatformFunction(
            self,
            spec,
            stage=self._stage,
            code=self._code,
            layers=self._layers,
            environment=self._environment,
            facets=facets,
        )


class _PlatformFunction(Construct):
    """One function with its own role (no permission but writing its own log group)."""

    def __init__(
        self,
        scope: Construct,
        spec: _Spec,
        *,
        stage: str,
        code: lambda_.Code,
        layers: list[lambda_.ILayerVersion],
        environment: Mapping[str, str],
        facets: Facets | None,
    ) -> None:
        super().__init__(scope, spec.id)
        name = names.platform_function_name(stage, spec.role_name)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{name}",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = grants.lambda_role(self, "Role", f"Treadle {stage}: {spec.description}")
        # Only its own log group: a role given to a Function gets no AWSLambdaBasicExecutionRole.
        grants.allow(
            self.role,
            "OwnLogs",
            ("logs:CreateLogStream", "logs:PutLogEvents"),
            [self.log_group.log_group_arn],
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=name,
            description=f"Treadle {stage}: {spec.description}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=code,
            handler=spec.handler,
            role=self.role,
            layers=layers,
            timeout=spec.timeout,
            memory_size=spec.memory_mb,
            environment=dict(environment),
            log_group=self.log_group,
            **_in_vpc(facets),
            # X-Ray: the handlers' Powertools Tracer segments; CDK grants the role
            # xray:PutTraceSegments and xray:PutTelemetryRecords for it.
            tracing=lambda_.Tracing.ACTIVE,
        )


def _in_vpc(facets: Facets | None) -> dict[str, Any]:
    """A platform function's network and mount: none, or the facets VPC's private subnets,
    the platform security group and the facets root."""
    if facets is None:
        return {}
    return {
        "vpc": facets.vpc,
        "vpc_subnets": facets.subnets,
        "security_groups": [facets.platform_sg],
        "filesystem": facets.mount(),
    }
