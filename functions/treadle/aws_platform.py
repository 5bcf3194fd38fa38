"""The AWS composition root: the same engine, use cases and HTTP app over AWS adapters.

Built once per process from `Settings`: by each platform Lambda container
(`treadle.entrypoints`) and by `treadle dev --backend aws`, which points every client
at `AWS_ENDPOINT_URL` (a moto server, LocalStack) and then also plays the orchestrator
and sweep Lambdas in threads (`aws_loops`).

| port | adapter |
|---|---|
| ExecutionStore, FunctionStore, tenants, Git refs | DynamoDB, one table |
| Git packs, code zips, big payloads | S3, one bucket |
| Dispatcher (timers) | SQS + the sweep |
| FunctionRuntime | Lambda; emulated: Lambda's control plane, code in the local sandbox |
| LogStore | CloudWatch Logs, the groups Lambda writes (`log_store="local"`: a file) |

Secrets: the checkpoint-token key is the Secrets Manager secret the stack made (a data
directory file in emulated mode without one). The admin key is, in this order: the
configured pair, the admin secret the stack generates (only the API function is given
its ARN and may read it), or derived from the token key: every container must agree on
it and no container keeps files.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from treadle.adapters.aws.cloudwatch_logs import CloudWatchLogStore
from treadle.adapters.aws.dynamodb_executions import DynamoExecutionStore
from treadle.adapters.aws.dynamodb_functions import DynamoFunctionStore
from treadle.adapters.aws.dynamodb_refs import DynamoRefStore
from treadle.adapters.aws.dynamodb_tenants import DynamoTenantStore
from treadle.adapters.aws.lambda_runtime import Invoker, LambdaRuntime
from treadle.adapters.aws.resources import AwsClients, provision, read_admin_key, read_secret
from treadle.adapters.aws.s3_code import S3CodeStore
from treadle.adapters.aws.s3_objects import S3ObjectStore
from treadle.adapters.aws.sqs_dispatcher import SqsDispatcher, handle_messages
from treadle.adapters.aws.sweep import DynamoTimerLookup, SweepReport, sweep
from treadle.adapters.local.basics import RandomIds, SystemClock
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.sandbox import LocalSandbox
from treadle.adapters.sandbox.hardening import protect_data_dir
from treadle.adapters.sandbox_runtime import SandboxRuntime
from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.api.channel import DurableChannel
from treadle.artifacts import Repositories
from treadle.aws_loops import Periodic, QueuePoller
from treadle.composition import (
    Ports,
    build_core,
    ensure_credentials,
    lock_data_dir,
    sandbox_env,
)
from treadle.domain.errors import InvalidParameter
from treadle.domain.logs import LogStore
from treadle.settings import ENV_QUEUE_URL, ENV_TENANT_LAYER_ARN, ENV_TENANT_ROLE_ARN, Settings
from treadle.tenancy.admin import TenantAdmin
from treadle.tenancy.sandbox_keys import SandboxKeys

log = logging.getLogger(__name__)


def derived_admin_key(token_secret: bytes) -> tuple[str, str]:
    """The admin's key pair as a function of the token key (see the module docstring)."""
    digest = hmac.new(token_secret, b"treadle-admin-key", hashlib.sha256).digest()
    key_id = "AKIA" + base64.b32encode(digest[:10]).decode()[:16]
    secret = base64.b64encode(digest[10:], altchars=b"ab").decode()[:40]
    return key_id, secret


class _NoWake:
    """Timers go to SQS through the dispatcher; nothing polls the table to be woken."""

    def wake(self, due_ms: int) -> None:
        return None


class AwsPlatform:
    def __init__(
        self,
        settings: Settings,
        *,
        endpoint: str | None = None,
        clients: AwsClients | None = None,
        create_resources: bool | None = None,
    ) -> None:
        """`endpoint`: where tenant code reaches the API (default: `api_url`, else host:port).

        `create_resources` (default: emulated) creates a missing table, bucket, queue and
        tenant role; on AWS the stack made them and the settings name them.
        """
        self.settings = settings
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        protect_data_dir(data)
        self._lock_fd = lock_data_dir(data)
        try:
            self._build(endpoint, clients, create_resources)
        except BaseException:
            os.close(self._lock_fd)  # a failed start leaves the data directory usable
            raise

    def _build(
        self, endpoint: str | None, clients: AwsClients | None, create_resources: bool | None
    ) -> None:
        settings = self.settings
        data = settings.data_dir
        self.clients = clients or AwsClients.create(settings.region, settings.aws_endpoint_url)
        self.table, self.bucket = settings.table_name, settings.bucket_name
        queue_url, role_arn = settings.queue_url, settings.tenant_role_arn
        if settings.emulated if create_resources is None else create_resources:
            made = provision(
                self.clients,
                table=self.table,
                bucket=self.bucket,
                region=settings.region,
                stage=settings.stage,
                queue_url=queue_url,
                tenant_role_arn=role_arn,
            )
            queue_url, role_arn = made.queue_url, made.tenant_role_arn
        if not queue_url or not role_arn:
            raise InvalidParameter(
                f"The AWS backend needs {ENV_QUEUE_URL} and {ENV_TENANT_ROLE_ARN}."
            )
        self.queue_url = queue_url
        if settings.token_secret_arn:
            self.token_secret = read_secret(self.clients.secrets, settings.token_secret_arn)
        else:
            self.token_secret = settings.token_secret()
        if settings.admin_secret_arn and not settings.admin_access_key_id:
            self.admin_key = read_admin_key(self.clients.secrets, settings.admin_secret_arn)
        elif settings.admin_access_key_id or not settings.token_secret_arn:
            self.admin_key = settings.admin_key()
        else:
            self.admin_key = derived_admin_key(self.token_secret)
        self.endpoint = endpoint or settings.api_url or f"http://{settings.host}:{settings.port}"
        self.credentials_path = data / "credentials"
        self.clock = SystemClock()
        ids = RandomIds()
        ddb, s3 = self.clients.dynamodb, self.clients.s3
        self.executions_store = DynamoExecutionStore(
            ddb, self.table, s3_client=s3, bucket=self.bucket
        )
        self.functions_store = DynamoFunctionStore(ddb, self.table)
        self.tenants = TenantAdmin(DynamoTenantStore(ddb, self.table), self.clock)
        self.code = S3CodeStore(s3, self.bucket, LocalCodeStore(data / "code"))
        self.logs: LogStore
        if settings.log_store == "local":
            self.logs = SqliteLogStore(data / "logs.db")
        else:
            # Emulators evaluate few filter patterns (moto: plain terms), AWS all of them.
            self.logs = CloudWatchLogStore(
                self.clients.logs, stage=settings.stage, filter_locally=settings.emulated
            )
        self.sandbox_keys = SandboxKeys(self.token_secret)
        self.sandbox: LocalSandbox | None = None
        self.sandbox_runtime: SandboxRuntime | None = None
        invoker: Invoker | None = None
        if settings.local_sandbox:
            self.sandbox = LocalSandbox(
                work_dir=data / "sandbox",
                max_warm_per_function=settings.sandbox_warm_per_function,
            )
            self.sandbox_runtime = SandboxRuntime(
                sandbox=self.sandbox,
                code=self.code,
                logs=self.logs,
                platform_env=sandbox_env(self.settings, self.endpoint),
                tenant_env=self.sandbox_keys.env,
            )
            invoker = self.sandbox_runtime.invoke
        self.runtime = LambdaRuntime(
            self.clients.lambda_,
            stage=settings.stage,
            role_arn=role_arn,
            code=self.code,
            api_url=self.endpoint,
            invoker=invoker,
            # Tenant Lambdas sign checkpoints with their tenant's sandbox key.
            sandbox_credentials=self.sandbox_keys.for_tenant,
            layers=[settings.tenant_layer_arn] if settings.tenant_layer_arn else [],
        )
        if not settings.local_sandbox and not settings.tenant_layer_arn:
            # Tenant Lambdas would sign with their role's STS credentials: refused.
            log.warning("%s is unset: tenant checkpoints will be refused", ENV_TENANT_LAYER_ARN)
        self.dispatcher = SqsDispatcher(self.clients.sqs, queue_url)
        self.timer_lookup = DynamoTimerLookup(ddb, self.table)
        self.repositories = Repositories(
            S3ObjectStore(s3, self.bucket), DynamoRefStore(ddb, self.table)
        )
        core = build_core(
            settings,
            Ports(
                executions=self.executions_store,
                functions=self.functions_store,
                code=self.code,
                logs=self.logs,
                tenants=self.tenants,
                repositories=self.repositories,
                runtime=self.runtime,
                clock=self.clock,
                ids=ids,
                # A counter the commit transactions keep (see `adapters.aws.commits`).
                running=self.executions_store.count_running,
                usage=self.functions_store.usage,
            ),
            token_secret=self.token_secret,
            admin_key=self.admin_key,
            endpoint=self.endpoint,
            scheduler=_NoWake(),
            dispatcher=self.dispatcher,
        )
        self.engine = core.engine
        self.app = core.app
        self.repos_api = core.repos_api
        if self.sandbox_runtime is not None and settings.durable_channel:
            self.sandbox_runtime.serve_durable_calls(DurableChannel(self.engine))
        self._loops: list[QueuePoller | Periodic] = []

    # -- what the platform Lambdas do ------------------------------------------------

    def handle_messages(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """The orchestrator: fire the timers of an SQS batch; the ids that failed."""
        return handle_messages(
            records,
            self.engine.fire,
            current=self.timer_lookup,
            requeue=self.dispatcher,
            clock=self.clock,
        )

    def sweep(self, now_ms: int | None = None) -> SweepReport:
        return sweep(
            self.executions_store,
            self.dispatcher,
            self.clock.now_ms() if now_ms is None else now_ms,
            interval_s=self.settings.sweep_interval_s,
        )

    # -- the local sandbox's environment (emulated mode) ------------------------------

    # -- `treadle dev --backend aws` ---------------------------------------------------

    def ensure_credentials(self) -> None:
        ensure_credentials(self.settings, self.tenants, self.credentials_path, self.admin_key)

    def start(self, *, loops: bool = True) -> None:
        """Start-up of a long-running process (not of a Lambda container)."""
        self.ensure_credentials()
        if self.sandbox is not None:
            self.sandbox.start()
        # Only one process drives this table in dev: a lease it finds held is a dead one.
        recovered = self.engine.recover()
        if recovered:
            log.info("recovered %d invocations interrupted by a restart", recovered)
        if loops:
            self._loops = [
                QueuePoller(self.clients.sqs, self.queue_url, self.handle_messages),
                Periodic("sweep", self.settings.sweep_interval_s, self.sweep),
            ]
            for loop in self._loops:
                loop.start()

    def start_sandbox(self) -> None:
        """Lambda containers: only the sandbox (when tenant code runs locally) starts."""
        if self.sandbox is not None:
            self.sandbox.start()

    def close(self) -> None:
        for loop in self._loops:
            loop.stop()
        if self.sandbox is not None:
            self.sandbox.close()
        os.close(self._lock_fd)
