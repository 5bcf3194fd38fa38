"""The embedded platform: SQLite store, local sandbox, in-process scheduler, HTTP API.

`Platform` is the composition root: it builds every adapter from `Settings`, wires the
engine and the HTTP application, and owns start-up (re-arming timers, recovering
invocations that died with a previous process) and shut-down.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from treadle.adapters.local.basics import RandomIds, SystemClock
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.local.scheduler import TimerScheduler
from treadle.adapters.sandbox import LocalSandbox
from treadle.adapters.sandbox.durable_channel import ENV_FLAG as DURABLE_CHANNEL_FLAG
from treadle.adapters.sandbox.hardening import protect_data_dir
from treadle.adapters.sandbox_runtime import SandboxRuntime
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.api.app import Application
from treadle.api.auth import Authenticator
from treadle.api.channel import DurableChannel
from treadle.api.git_routes import GitRoutes
from treadle.api.http import Response, Router
from treadle.api.lambda_routes import LambdaApi
from treadle.api.logs_routes import LogsApi
from treadle.api.openapi import build_document
from treadle.api.v1_functions import FunctionsApi
from treadle.api.v1_repos import ReposApi
from treadle.api.v1_tenants import TenantsApi
from treadle.app.completion import CompletionNotifier
from treadle.app.executions import ExecutionService
from treadle.app.functions import FunctionService
from treadle.app.quotas import TenantQuotas
from treadle.artifacts import (
    ArtifactService,
    GitHttp,
    LocalObjectStore,
    Repositories,
    SqliteRefStore,
)
from treadle.domain.engine.base import EngineConfig
from treadle.domain.engine.chained import ChainedEngine
from treadle.domain.engine.tokens import TokenCodec
from treadle.domain.ports import Timer
from treadle.settings import Settings
from treadle.tenancy.admin import TenantAdmin, ensure_dev_tenant
from treadle.tenancy.credentials import write_shared_credentials
from treadle.tenancy.models import Quotas
from treadle.tenancy.sandbox_keys import SandboxKeys
from treadle.tenancy.sqlite_store import SqliteTenantStore

ADMIN_PROFILE = "treadle-admin"
DEV_TENANT_QUOTAS = Quotas(
    max_functions=10_000,
    max_code_bytes=50 * 1024**3,
    max_running_executions=1_000_000,
    max_starts_per_second=100_000.0,
)
TENANT_PROFILE = "treadle"

log = logging.getLogger(__name__)


def _lock_data_dir(data: Path) -> int:
    """One platform per data directory: the stores cache what they wrote."""
    fd = os.open(data / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SystemExit(f"{data} is in use by another treadle process") from None
    return fd


class _LateScheduler:
    """Engine and scheduler need each other; this breaks the cycle at construction."""

    def __init__(self) -> None:
        self.target: TimerScheduler | None = None

    def wake(self, due_ms: int) -> None:
        if self.target is not None:
            self.target.wake(due_ms)


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        # Before any store opens: the platform's files are private (0600/0700, umask 077).
        protect_data_dir(data)
        self._lock_fd = _lock_data_dir(data)
        self.db = Database(data / "treadle.db")
        self.clock = SystemClock()
        self.ids = RandomIds()
        self.executions_store = SqliteExecutionStore(self.db)
        self.functions_store = SqliteFunctionStore(self.db)
        self.code = LocalCodeStore(data / "code")
        self.logs = SqliteLogStore(data / "logs.db")
        self.sandbox = LocalSandbox(
            work_dir=data / "sandbox",
            max_warm_per_function=settings.sandbox_warm_per_function,
        )
        self.endpoint = f"http://{settings.host}:{settings.port}"
        self.tenants = TenantAdmin(SqliteTenantStore(data / "tenants.db"), self.clock)
        self.sandbox_keys = SandboxKeys(settings.token_secret())
        self.runtime = SandboxRuntime(
            sandbox=self.sandbox,
            code=self.code,
            logs=self.logs,
            platform_env=self._function_env(),
            tenant_env=self._tenant_env,
        )
        self.repositories = Repositories(
            LocalObjectStore(data / "git" / "objects"), SqliteRefStore(data / "git" / "refs.db")
        )
        self.artifacts = ArtifactService(self.repositories)
        self.credentials_path = data / "credentials"
        self.auth = Authenticator(
            tenant_keys=self.tenants.lookup_secret,
            sandbox_keys=self.sandbox_keys,
            admin_key=settings.admin_key(),
            now_ms=self.clock.now_ms,
            max_skew_s=settings.max_clock_skew_s,
        )
        self.notifier = CompletionNotifier()
        self._late = _LateScheduler()
        self.engine = ChainedEngine(
            store=self.executions_store,
            functions=self.functions_store,
            runtime=self.runtime,
            clock=self.clock,
            ids=self.ids,
            tokens=TokenCodec(settings.token_secret()),
            scheduler=self._late,
            listener=self.notifier,
            config=EngineConfig(wait_time_scale=settings.wait_time_scale),
        )
        if settings.durable_channel:
            self.runtime.serve_durable_calls(DurableChannel(self.engine))
        self.scheduler = TimerScheduler(self.executions_store, self.clock, self._fire)
        self._late.target = self.scheduler
        self.quotas = TenantQuotas(
            self.tenants,
            running=self.executions_store.count_running,
            usage=self.functions_store.usage,
        )
        self.function_service = FunctionService(
            quotas=self.quotas,
            store=self.functions_store,
            code=self.code,
            artifacts=self.artifacts,
            clock=self.clock,
            ids=self.ids,
            region=settings.region,
        )
        self.execution_service = ExecutionService(
            engine=self.engine,
            functions=self.functions_store,
            runtime=self.runtime,
            notifier=self.notifier,
            ids=self.ids,
            quotas=self.quotas,
        )
        self.app = self._application()

    def _function_env(self) -> dict[str, str]:
        # What a Lambda sandbox gets from the service: where the durable API is and a
        # region; credentials are per tenant (`_tenant_env`).
        env = {
            "AWS_ENDPOINT_URL_LAMBDA": self.endpoint,
            "AWS_REGION": self.settings.region,
            "AWS_DEFAULT_REGION": self.settings.region,
        }
        if self.settings.durable_channel:
            env[DURABLE_CHANNEL_FLAG] = "1"
        return env

    def _tenant_env(self, tenant: str) -> dict[str, str]:
        key_id, secret = self.sandbox_keys.for_tenant(tenant)
        return {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}

    def _application(self) -> Application:
        router = Router()
        LambdaApi(self.function_service, self.execution_service).register(router)
        v1 = Router()
        v1.add("GET", "/v1/health", lambda _req: Response.json({"status": "ok"}))
        document = build_document()
        v1.add("GET", "/v1/openapi.json", lambda _req: Response.json(document))
        TenantsApi(self.tenants).register(v1)
        self.repos_api = ReposApi(self.artifacts, public_url=self.endpoint)
        self.repos_api.register(v1)
        FunctionsApi(self.function_service).register(v1)
        logs_api = LogsApi(self.logs)
        return Application(
            router=router,
            v1=v1,
            auth=self.auth,
            targets={"Logs_20140328": logs_api.handle},
            git=GitRoutes(GitHttp(self.repositories), self.auth),
            max_request_bytes=self.settings.max_request_bytes,
        )

    def ensure_credentials(self) -> None:
        """The default tenant and its key, and the admin key, as shared-credential profiles.

        `AWS_SHARED_CREDENTIALS_FILE=DATA_DIR/credentials AWS_PROFILE=treadle` then makes
        boto3 and the AWS CLI sign as the default tenant.
        """
        ensure_dev_tenant(
            self.tenants,
            self.credentials_path,
            account_id=self.settings.default_account,
            region=self.settings.region,
            profile=TENANT_PROFILE,
            # The developer's own tenant on their own machine: limits of a big account.
            quotas=DEV_TENANT_QUOTAS,
        )
        key_id, secret = self.settings.admin_key()
        write_shared_credentials(
            self.credentials_path, ADMIN_PROFILE, key_id, secret, self.settings.region
        )

    def _fire(self, timer: Timer) -> None:
        self.engine.fire(timer)

    def set_port(self, port: int) -> None:
        """The real port is known only once the socket is bound (port 0 in tests)."""
        self.endpoint = f"http://{self.settings.host}:{port}"
        self.runtime.set_platform_env(self._function_env())
        self.repos_api.public_url = self.endpoint

    def start(self) -> None:
        self.ensure_credentials()
        self.sandbox.start()
        recovered = self.engine.recover()
        if recovered:
            log.info("recovered %d invocations interrupted by a restart", recovered)
        self.scheduler.start()

    def close(self) -> None:
        self.scheduler.stop()
        self.sandbox.close()
        self.db.close()
        os.close(self._lock_fd)
