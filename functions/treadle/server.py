"""The embedded platform: SQLite store, local sandbox, in-process scheduler, HTTP API.

`Platform` is the composition root: it builds every adapter from `Settings`, has the
engine and the HTTP application built over them (`composition.build_core`, shared with
the AWS backend), and owns start-up (re-arming timers, recovering
invocations that died with a previous process) and shut-down.
"""

from __future__ import annotations

import logging
import os

from treadle.adapters.local.basics import RandomIds, SystemClock
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.local.scheduler import TimerScheduler
from treadle.adapters.sandbox import LocalSandbox
from treadle.adapters.sandbox.function_runtime import SandboxRuntime
from treadle.adapters.sandbox.hardening import protect_data_dir
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.api.channel import DurableChannel
from treadle.artifacts import Repositories
from treadle.composition import (
    ADMIN_PROFILE,
    TENANT_PROFILE,
    LateScheduler,
    Ports,
    build_core,
    ensure_credentials,
    lock_data_dir,
    sandbox_env,
)
from treadle.domain.ports import Timer
from treadle.settings import Settings
from treadle.tenancy.admin import TenantAdmin
from treadle.tenancy.sandbox_keys import SandboxKeys

# Re-exported: `treadle.cli` and `treadle.demo` import them from here.
__all__ = ["ADMIN_PROFILE", "TENANT_PROFILE", "Platform", "lock_data_dir"]

log = logging.getLogger(__name__)


class Platform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        # Before any store opens: the platform's files are private (0600/0700, umask 077).
        protect_data_dir(data)
        self._lock_fd = lock_data_dir(data)
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
            platform_env=sandbox_env(self.settings, self.endpoint),
            tenant_env=self.sandbox_keys.env,
        )
        self.repositories = Repositories(
            LocalObjectStore(data / "git" / "objects"), SqliteRefStore(data / "git" / "refs.db")
        )
        self.credentials_path = data / "credentials"
        self._late = LateScheduler()
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
                ids=self.ids,
                running=self.executions_store.count_running,
                usage=self.functions_store.usage,
            ),
            token_secret=settings.token_secret(),
            admin_key=settings.admin_key(),
            endpoint=self.endpoint,
            scheduler=self._late,
        )
        self.engine = core.engine
        self.notifier = core.notifier
        self.auth = core.auth
        self.artifacts = core.artifacts
        self.function_service = core.function_service
        self.execution_service = core.execution_service
        self.repos_api = core.repos_api
        self.app = core.app
        if settings.durable_channel:
            self.runtime.serve_durable_calls(DurableChannel(self.engine))
        self.scheduler = TimerScheduler(
            self.executions_store,
            self.clock,
            self._fire,
            invoke_workers=settings.invoke_concurrency,
        )
        self._late.target = self.scheduler

    def ensure_credentials(self) -> None:
        ensure_credentials(
            self.settings, self.tenants, self.credentials_path, self.settings.admin_key()
        )

    def _fire(self, timer: Timer) -> None:
        self.engine.fire(timer)

    def set_port(self, port: int) -> None:
        """The real port is known only once the socket is bound (port 0 in tests)."""
        self.endpoint = f"http://{self.settings.host}:{port}"
        self.runtime.set_platform_env(sandbox_env(self.settings, self.endpoint))
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
