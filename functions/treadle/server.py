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
from treadle.adapters.sandbox_runtime import SandboxRuntime
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.api.app import Application
from treadle.api.channel import DurableChannel
from treadle.api.http import Request, Response, Router
from treadle.api.lambda_routes import LambdaApi
from treadle.api.logs_routes import LogsApi
from treadle.app.completion import CompletionNotifier
from treadle.app.executions import ExecutionService
from treadle.app.functions import FunctionService
from treadle.domain.engine.base import EngineConfig
from treadle.domain.engine.chained import ChainedEngine
from treadle.domain.engine.tokens import TokenCodec
from treadle.domain.ports import Timer
from treadle.settings import Settings

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
        self.runtime = SandboxRuntime(
            sandbox=self.sandbox, code=self.code, logs=self.logs, platform_env=self._function_env()
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
        self.function_service = FunctionService(
            store=self.functions_store,
            code=self.code,
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
        )
        self.app = self._application()

    def _function_env(self) -> dict[str, str]:
        # What a Lambda sandbox gets from the service: where the durable API is, a
        # region and credentials. The credentials are placeholders until tenant keys
        # exist; the endpoint is loopback only.
        env = {
            "AWS_ENDPOINT_URL_LAMBDA": self.endpoint,
            "AWS_REGION": self.settings.region,
            "AWS_DEFAULT_REGION": self.settings.region,
            "AWS_ACCESS_KEY_ID": "treadle-sandbox",
            "AWS_SECRET_ACCESS_KEY": "treadle-sandbox",
        }
        if self.settings.durable_channel:
            env[DURABLE_CHANNEL_FLAG] = "1"
        return env

    def _application(self) -> Application:
        router = Router()
        LambdaApi(self.function_service, self.execution_service).register(router)
        router.add("GET", "/v1/health", lambda _req: Response.json({"status": "ok"}))
        logs_api = LogsApi(self.logs)
        return Application(
            router=router,
            resolve_tenant=self._tenant,
            targets={"Logs_20140328": logs_api.handle},
            max_request_bytes=self.settings.max_request_bytes,
        )

    def _tenant(self, _request: Request) -> str:
        return self.settings.default_account

    def _fire(self, timer: Timer) -> None:
        self.engine.fire(timer)

    def set_port(self, port: int) -> None:
        """The real port is known only once the socket is bound (port 0 in tests)."""
        self.endpoint = f"http://{self.settings.host}:{port}"
        self.runtime.set_platform_env(self._function_env())

    def start(self) -> None:
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
