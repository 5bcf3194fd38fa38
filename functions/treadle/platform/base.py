"""A running platform, whichever the backend: the steps both do the same way.

`Platform` owns the data directory (private, locked: one platform per directory), the
local sandbox when tenant code runs here, the core (engine, use cases, HTTP app, built
once in `core.build_core`), the default tenant's credentials, and start-up and
shut-down: re-arm what died with a previous process, then run the background work.

A backend (`embedded.EmbeddedPlatform`, `aws.AwsPlatform`) only says which adapters
stand behind the ports (`_ports`), what runs in the background (`_background`) and
what to close at the end (`_close_adapters`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from treadle.adapters.local.basics import RandomIds, SystemClock
from treadle.adapters.sandbox import LocalSandbox
from treadle.adapters.sandbox.function_runtime import SandboxRuntime, UnpackedCode
from treadle.adapters.sandbox.hardening import protect_data_dir
from treadle.adapters.sandbox.tenant_egress import SandboxEgress
from treadle.adapters.sqlite.facets import SqliteFacetStore
from treadle.api.app import Application
from treadle.api.channel import DurableChannel, FacetChannel
from treadle.api.sandbox_endpoint import SandboxEndpoints
from treadle.app.relay import Relay
from treadle.app.schedule_firing import ScheduleFirer
from treadle.domain.engine import Engine
from treadle.domain.errors import TreadleError
from treadle.domain.logs import LogStore
from treadle.domain.partition import Partition
from treadle.observability.running_seed import running_by_function
from treadle.platform.core import Ports, build_core, sandbox_env
from treadle.settings import Settings
from treadle.tenancy.admin import ensure_dev_tenant
from treadle.tenancy.credentials import write_shared_credentials
from treadle.tenancy.models import Quotas
from treadle.tenancy.sandbox_keys import SandboxKeys

log = logging.getLogger(__name__)

ADMIN_PROFILE = "treadle-admin"
TENANT_PROFILE = "treadle"
# How long a start waits for the data directory's lock to be released.
LOCK_WAIT_S = 2.0
# The developer's own tenant on their own machine: the limits of a big account.
DEV_TENANT_QUOTAS = Quotas(
    max_functions=10_000,
    max_code_bytes=50 * 1024**3,
    max_running_executions=1_000_000,
    max_starts_per_second=100_000.0,
    max_queued=2_000_000,
)


class StartupError(TreadleError):
    """The platform cannot start with these settings or resources (said to the user)."""


class Background(Protocol):
    """Work a long-running platform process does besides serving requests."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Platform(ABC):
    engine: Engine
    app: Application
    schedules: ScheduleFirer
    # How often a buffered firing looks whether the previous execution has closed.
    schedule_recheck_ms = 60_000
    relay: Relay

    def __init__(
        self,
        settings: Settings,
        *,
        endpoint: str | None = None,
        partition: Partition | None = None,
        lock_fd: int | None = None,
    ) -> None:
        """`endpoint`: where tenant code and Git clients reach the API (default: the
        configured `api_url`, else host:port). `partition`: this process's place among
        several sharing the data directory (`domain/partition`); a process other than the
        first is given the first's lock (`lock_fd`, inherited) instead of taking it."""
        self.settings = settings
        self.partition = partition or Partition()
        self.endpoint = endpoint or settings.api_url or f"http://{settings.host}:{settings.port}"
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        # Before any store opens: the platform's files are private (0600/0700, umask 077).
        protect_data_dir(data)
        self._lock_fd = lock_data_dir(data) if lock_fd is None else held_lock(data, lock_fd)
        self.credentials_path = data / "credentials"
        self.clock = SystemClock()
        self.ids = RandomIds(self.partition)
        self.sandbox: LocalSandbox | None = None
        self.sandbox_runtime: SandboxRuntime | None = None
        self._running: Sequence[Background] = ()
        # Why tenants' code is not isolated from each other here (empty: it is).
        self.isolation_shortcomings: list[str] = []
        try:
            self.token_secret, self.admin_key = self._secrets()
            self.sandbox_keys = SandboxKeys(self.token_secret)
            ports = self._ports()
            core = build_core(
                settings,
                ports,
                token_secret=self.token_secret,
                admin_key=self.admin_key,
                endpoint=self.endpoint,
                schedule_recheck_ms=self.schedule_recheck_ms,
                processes=self.partition.count,
            )
        except BaseException:
            self._close_adapters()
            os.close(self._lock_fd)  # a failed start leaves the data directory usable
            raise
        self.engine = core.engine
        self.app = core.app
        self.schedules = core.schedules
        self.relay = core.relay
        self.metrics = core.metrics
        self.gc = core.gc
        self.promoter = core.promoter
        self.promotion_signal = core.promotion_signal
        self.end_held_requests = core.end_held_requests
        self.tenants = ports.tenants
        self._stores = ports
        if self.sandbox_runtime is not None and settings.durable_channel:
            self.sandbox_runtime.serve_durable_calls(DurableChannel(self.engine))
        if self.sandbox_runtime is not None:
            self.sandbox_runtime.serve_facet_calls(FacetChannel(core.facets))
        if self.sandbox is not None:
            # The endpoint inside each tenant's network namespace (when it has one).
            self.sandbox.serve_endpoints(SandboxEndpoints(self.app))
            # Tenants' egress policies, on their namespaces (refused where not enforced).
            self.tenants.enforce_egress_with(SandboxEgress(self.sandbox, self.tenants.store))

    # -- what a backend provides -----------------------------------------------------

    def _secrets(self) -> tuple[bytes, tuple[str, str]]:
        """The checkpoint-token key and the admin's key pair."""
        return self.settings.token_secret(), self.settings.admin_key()

    @abstractmethod
    def _ports(self) -> Ports:
        """The adapters behind the ports (may call `_local_sandbox`)."""

    @abstractmethod
    def _background(self) -> list[Background]:
        """What a long-running process runs besides the API, in start order."""

    def _rearm_timers(self) -> None:  # noqa: B027 (a hook: the embedded scheduler loads its rows)
        """Before background work starts: send again what the last process held."""

    def _close_adapters(self) -> None:  # noqa: B027 (a hook: most backends hold nothing)
        """Release what `_ports` opened (called once, also after a failed build)."""

    # -- shared pieces -------------------------------------------------------------------

    def _local_sandbox(self, code: UnpackedCode, logs: LogStore) -> SandboxRuntime:
        """Tenant code in local sandbox processes, with its tenant's sandbox key."""
        # Each process its own workers, zygote, /tmp mounts and tenant namespaces: the
        # sandbox's names are its work directory's (cgroups carry the server's pid). The
        # tenants' uids are one table for all: a tenant is the same uid in each.
        part = self.partition
        data = self.settings.data_dir
        self.sandbox = LocalSandbox(
            work_dir=data / ("sandbox" if part.primary else f"sandbox-{part.index}"),
            private_root=data,
            ids_path=data / "sandbox" / "tenant-ids.json",
            max_warm_per_function=self.settings.sandbox_warm_per_function,
            idle_s=self.settings.sandbox_idle_s,
            subnet=self.settings.sandbox_subnet,
        )
        self.sandbox_runtime = SandboxRuntime(
            sandbox=self.sandbox,
            code=code,
            logs=logs,
            platform_env=sandbox_env(self.settings, self.endpoint),
            tenant_env=self.sandbox_keys.env,
            init_ahead=self.settings.sandbox_init_ahead,
        )
        return self.sandbox_runtime

    def _local_facets(self) -> SqliteFacetStore:
        """Facets as SQLite files under the data directory, owned by the tenants' uids
        and shown to their workers (when tenant code runs here)."""
        sandbox = self.sandbox

        def owner(tenant: str) -> int | None:
            return None if sandbox is None else sandbox.tenant_group(tenant)

        store = SqliteFacetStore(self.settings.data_dir / "facets", owner)
        if sandbox is not None:
            sandbox.serve_facets(store.tenant_dir)
        return store

    # -- life cycle ----------------------------------------------------------------------

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
            quotas=DEV_TENANT_QUOTAS,
        )
        key_id, secret = self.admin_key
        write_shared_credentials(
            self.credentials_path, ADMIN_PROFILE, key_id, secret, self.settings.region
        )

    def start_sandbox(self) -> None:
        """Lambda containers: only the sandbox (when tenant code runs locally) starts.

        Where this host cannot isolate tenants' code from each other, the platform keeps
        to one tenant (said at start), unless the operator explicitly accepts the risk.
        """
        if self.sandbox is None:
            return  # tenant code runs in Lambda: one execution environment per function
        self.sandbox.start()
        self.isolation_shortcomings = self.sandbox.isolation_shortcomings()
        if not self.isolation_shortcomings:
            return
        reason = "; ".join(self.isolation_shortcomings)
        if self.settings.insecure_multi_tenant:
            log.warning("INSECURE multi-tenant mode (as asked): %s", reason)
        else:
            self.tenants.keep_to_one_tenant(reason)
            log.warning("single-tenant mode: %s", reason)

    def start(self, *, background: bool = True) -> None:
        """Start-up of a long-running process (not of a Lambda container)."""
        primary = self.partition.primary
        if primary:
            self.ensure_credentials()
        self.start_sandbox()
        if primary:
            # Before any work: executions RUNNING since an earlier process count in the
            # gauge (of the first process only: the gauge is per process).
            stores = self._stores
            self.metrics.seed_running(
                running_by_function(
                    stores.tenants, stores.functions, stores.executions, stores.clock.now_ms()
                )
            )
        # One process drives these executions (all of them, or its partition's): a lease
        # it finds held died with the last one.
        recovered = self.engine.recover()
        if recovered:
            log.info("recovered %d invocations interrupted by a restart", recovered)
        if background:
            self._rearm_timers()
            self._running = self._background()
            for work in self._running:
                work.start()

    @property
    def lock_fd(self) -> int:
        """The data directory's lock, for the processes that share it (`--processes`)."""
        return self._lock_fd

    def close(self) -> None:
        for work in reversed(self._running):
            work.stop()
        self._running = ()
        if getattr(self, "relay", None) is not None:
            self.relay.close()
        if self.sandbox is not None:
            self.sandbox.close()
        self._close_adapters()
        os.close(self._lock_fd)


def held_lock(data: Path, fd: int) -> int:
    """The data directory's lock, inherited from the process that took it (`--processes`):
    checked to be that very file, and held (a lock on an inherited descriptor is shared)."""
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(data / "lock"))
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        same = False
    if not same:
        raise StartupError(f"the lock of {data} was not passed to this process")
    return fd


def lock_data_dir(data: Path) -> int:
    """One platform per data directory: the background loops (relay, promoter,
    retention) and the recovery of leases at start assume one platform. Its processes
    (`--processes`) share the lock it took, so a new start waits for the last of them:
    after a kill -9 of the first, the others are still exiting for a few milliseconds.
    (The caches of executions, function versions and tenants follow other writers.)"""
    fd = os.open(data / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StartupError(f"{data} is in use by another treadle process") from None
            time.sleep(0.02)
