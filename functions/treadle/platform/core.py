"""What both backends build the same way: engine, use cases, authentication, HTTP app.

A backend (`embedded.EmbeddedPlatform`, `aws.AwsPlatform`) chooses the adapters behind
the ports; `Platform` (base.py) hands them to `build_core`. Everything above the ports
is built here once, so the two backends cannot drift apart in routes, auth or error
mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from treadle.adapters.sandbox.durable_channel import ENV_FLAG as DURABLE_CHANNEL_FLAG
from treadle.api.alias_routes import AliasApi
from treadle.api.app import Application
from treadle.api.audit import Auditor
from treadle.api.auth import Authenticator
from treadle.api.git_http import GitHttp
from treadle.api.http import Request, Response, Router
from treadle.api.lambda_routes import LambdaApi
from treadle.api.logs_routes import LogsApi
from treadle.api.metrics_route import MetricsEndpoint
from treadle.api.openapi import build_document
from treadle.api.v1_audit import AuditApi
from treadle.api.v1_executions import ExecutionsApi
from treadle.api.v1_facets import FacetsApi
from treadle.api.v1_functions import FunctionsApi
from treadle.api.v1_gc import GcApi
from treadle.api.v1_inventory import InventoryApi
from treadle.api.v1_notifications import NotificationsApi
from treadle.api.v1_repos import ReposApi
from treadle.api.v1_schedules import SchedulesApi
from treadle.api.v1_tenants import TenantsApi
from treadle.api.v1_usage import UsageApi
from treadle.app.aliases import AliasService
from treadle.app.completion import CompletionNotifier
from treadle.app.executions import ExecutionService
from treadle.app.functions import FunctionService
from treadle.app.gc import GarbageCollector
from treadle.app.inventory import InventoryService
from treadle.app.last_used import RecordingRuntime, UseRecorder
from treadle.app.notifications import NotificationService
from treadle.app.promoter import Promoter, PromotionSignal
from treadle.app.quotas import TenantQuotas
from treadle.app.relay import Relay
from treadle.app.schedule_firing import ScheduleFirer
from treadle.app.schedules import ScheduleService
from treadle.app.usage import UsageService
from treadle.artifacts import ArtifactService, Repositories
from treadle.artifacts.ports import TokenStore
from treadle.artifacts.tokens import RepoTokens
from treadle.console.mount import attach_console
from treadle.domain.audit import AuditLog
from treadle.domain.engine import Engine, EngineConfig, TokenCodec
from treadle.domain.lanes import InvocationLanes
from treadle.domain.logs import LogStore
from treadle.domain.notification_ports import (
    EventPublisher,
    StatusEventStore,
    WebhookSender,
    WebhookStore,
)
from treadle.domain.ports import (
    AliasStore,
    Clock,
    CodeStore,
    Dispatcher,
    ExecutionStore,
    FunctionRuntime,
    FunctionStore,
    Ids,
    LastUsedStore,
)
from treadle.domain.schedules import Calendar, ScheduleStore
from treadle.domain.start_queue import StartQueue
from treadle.domain.usage import FACET, REPOSITORY
from treadle.facets import Facets, FacetStore
from treadle.observability import server_log
from treadle.observability.metrics import DurableMetrics
from treadle.observability.runtime import ObservedRuntime
from treadle.settings import Settings
from treadle.tenancy.admin import QuotaGuard, TenantAdmin
from treadle.tenancy.sandbox_keys import SandboxKeys


@dataclass(frozen=True)
class Ports:
    """The adapters a backend chose."""

    executions: ExecutionStore
    functions: FunctionStore
    aliases: AliasStore  # the same adapter as `functions` (see the port)
    code: CodeStore
    logs: LogStore
    tenants: TenantAdmin
    repositories: Repositories
    tokens: TokenStore
    runtime: FunctionRuntime
    dispatcher: Dispatcher
    clock: Clock
    ids: Ids
    facets: FacetStore
    schedules: ScheduleStore
    calendar: Calendar
    # Status-change notifications (docs/notifications.md).
    status_events: StatusEventStore
    webhooks: WebhookStore
    webhook_sender: WebhookSender
    last_used: LastUsedStore  # the inventory's last uses (app/last_used.py)
    publishers: Sequence[EventPublisher] = field(default_factory=tuple)
    # The audit log's reader (docs/operating.md); None: nothing is audited.
    audit: AuditLog | None = None
    # Queued starts (issue 14.5); None: a backend without one refuses over quota (429).
    start_queue: StartQueue | None = None
    # Invocations run in this process (embedded): a start hands its first one over.
    lanes: InvocationLanes | None = None


@dataclass(frozen=True)
class Core:
    """What a platform drives: the engine (timers, recovery) and the HTTP application;
    facets, whose workers' calls the sandbox runtime answers."""

    engine: Engine
    app: Application
    facets: Facets
    schedules: ScheduleFirer
    relay: Relay  # hands status changes to webhooks and publishers (app/relay.py)
    metrics: DurableMetrics  # what /metrics shows (docs/observability.md)
    gc: GarbageCollector  # tenants' GC policies (app/gc.py), run by the platform's loop
    # Ends the requests held open (synchronous durable invokes, long polls): the server
    # is stopping, and they would hold its stop up for their whole wait.
    end_held_requests: Callable[[], None]
    # Promotes queued starts (app/promoter.py); None without a start queue.
    promoter: Promoter | None = None
    promotion_signal: PromotionSignal = field(default_factory=PromotionSignal)


def build_core(
    settings: Settings,
    ports: Ports,
    *,
    token_secret: bytes,
    admin_key: tuple[str, str],
    endpoint: str,
    schedule_recheck_ms: int = 60_000,
    processes: int = 1,
) -> Core:
    """`processes`: how many server processes share the stores (quotas per process)."""
    sandbox_keys = SandboxKeys(token_secret)
    repo_tokens = RepoTokens(ports.tokens, ports.repositories.refs, now_ms=ports.clock.now_ms)
    auth = Authenticator(
        repo_tokens=repo_tokens.verify,
        tenant_enabled=ports.tenants.is_enabled,
        tenant_keys=ports.tenants.lookup_secret,
        sandbox_keys=sandbox_keys,
        admin_key=admin_key,
        now_ms=ports.clock.now_ms,
        max_skew_s=settings.max_clock_skew_s,
    )
    recorder = UseRecorder(ports.last_used, ports.clock)
    notifier = CompletionNotifier()
    metrics = DurableMetrics()
    promotion_signal = PromotionSignal()
    # Every invocation goes through the runtime, durable or not: the inventory's last use
    # of a version, and its span, metrics and error line.
    runtime = ObservedRuntime(RecordingRuntime(ports.runtime, recorder), metrics)
    engine = Engine(
        store=ports.executions,
        functions=ports.functions,
        runtime=runtime,
        clock=ports.clock,
        ids=ports.ids,
        tokens=TokenCodec(token_secret),
        dispatcher=ports.dispatcher,
        listener=notifier,
        config=EngineConfig(wait_time_scale=settings.wait_time_scale),
        status_listeners=(
            metrics.status_changed,
            server_log.status_changed,
            promotion_signal.status_changed,
        ),
        slot_listeners=(promotion_signal.slot_freed,),
        lanes=ports.lanes,
    )
    artifacts = ArtifactService(ports.repositories, tokens=ports.tokens)
    quotas = TenantQuotas(
        ports.tenants,
        executions=ports.executions,
        functions=ports.functions,
        guard=QuotaGuard(processes=processes),
        queue=ports.start_queue,
    )
    promoter = None
    if ports.start_queue is not None:
        promoter = Promoter(
            tenants=ports.tenants,
            executions=ports.executions,
            queue=ports.start_queue,
            engine=engine,
            guard=quotas.guard,
        )
    function_service = FunctionService(
        quotas=quotas,
        store=ports.functions,
        code=ports.code,
        artifacts=artifacts,
        clock=ports.clock,
        ids=ports.ids,
        region=settings.region,
        prepare=runtime.prepare,
        aliases=ports.aliases,
    )
    execution_service = ExecutionService(
        engine=engine,
        functions=ports.functions,
        runtime=runtime,
        notifier=notifier,
        ids=ports.ids,
        quotas=quotas,
        sync_invoke_wait_s=settings.sync_invoke_wait_s,
        aliases=ports.aliases,
    )
    firer = ScheduleFirer(
        store=ports.schedules,
        calendar=ports.calendar,
        engine=engine,
        functions=ports.functions,
        aliases=ports.aliases,
        quotas=quotas,
        clock=ports.clock,
        recheck_ms=schedule_recheck_ms,
    )
    router = Router()
    LambdaApi(function_service, execution_service).register(router)
    AliasApi(AliasService(store=ports.aliases, functions=ports.functions, ids=ports.ids)).register(
        router
    )
    v1 = Router()
    v1.add("GET", "/v1/health", lambda _req: Response.json({"status": "ok"}))
    document = build_document()
    v1.add("GET", "/v1/openapi.json", lambda _req: Response.json(document))
    TenantsApi(ports.tenants).register(v1)
    gc = GarbageCollector(
        tenants=ports.tenants,
        functions=ports.functions,
        aliases=ports.aliases,
        refs=ports.repositories.refs,
        artifacts=artifacts,
        facets=ports.facets,
        last_used=ports.last_used,
        clock=ports.clock,
        ids=ports.ids,
        audit=ports.audit,
        repositories=ports.repositories,
        pack_grace_ms=settings.gc_pack_grace_s * 1000,
        code=ports.code,
    )
    GcApi(gc).register(v1)
    auditor = None
    if ports.audit is not None:
        auditor = Auditor(ports.audit, ports.clock, ports.ids)
        AuditApi(ports.audit).register(v1)
    repos_api = ReposApi(artifacts, repo_tokens, public_url=endpoint)
    repos_api.register(v1)
    FunctionsApi(function_service).register(v1)
    ExecutionsApi(execution_service).register(v1)
    SchedulesApi(ScheduleService(firer)).register(v1)
    facets = Facets(
        ports.facets, ports.tenants, lambda tenant, name: recorder.used(tenant, FACET, name)
    )
    FacetsApi(facets).register(v1)
    UsageApi(
        UsageService(
            tenants=ports.tenants,
            executions=ports.executions,
            functions=ports.functions,
            refs=ports.repositories.refs,
            facets=ports.facets,
            clock=ports.clock,
        )
    ).register(v1)
    InventoryApi(
        InventoryService(
            tenants=ports.tenants,
            functions=ports.functions,
            refs=ports.repositories.refs,
            facets=ports.facets,
            executions=ports.executions,
            last_used=ports.last_used,
            clock=ports.clock,
        )
    ).register(v1)
    allow_private = settings.webhooks_may_call_private
    notifications = NotificationService(
        ports.status_events,
        ports.webhooks,
        ports.clock,
        source=settings.event_source,
        allow_private=allow_private,
    )
    NotificationsApi(notifications).register(v1)

    def end_held_requests() -> None:
        notifier.stop()
        notifications.stop()

    relay = Relay(
        ports.status_events,
        ports.webhooks,
        ports.webhook_sender,
        ports.clock,
        publishers=ports.publishers,
        source=settings.event_source,
        allow_private=allow_private,
    )
    logs_api = LogsApi(ports.logs)

    def repo_used(tenant: str, repo: str) -> None:
        recorder.used(tenant, REPOSITORY, repo)

    def sandbox_git(request: Request, tenant: str) -> Response:
        # Only that tenant's repository tokens: its sandbox key and any leaked tenant
        # key open nothing over Git from inside.
        return GitHttp(ports.repositories, lambda r: auth.git_token(r, tenant), used=repo_used)(
            request
        )

    app = Application(
        router=router,
        v1=v1,
        auth=auth,
        targets={"Logs_20140328": logs_api.handle},
        git=GitHttp(ports.repositories, auth.git, used=repo_used),
        max_request_bytes=settings.max_request_bytes,
        sandbox_git=sandbox_git,
        metrics=MetricsEndpoint(
            metrics,
            auth,
            settings.metrics_token.get_secret_value() if settings.metrics_token else None,
        ),
        auditor=auditor,
    )
    attach_console(
        app,
        token_secret=token_secret,
        admin_key=admin_key,
        tenant_keys=ports.tenants.lookup_secret,
        now_s=lambda: ports.clock.now_ms() / 1000,
    )
    return Core(
        engine=engine,
        app=app,
        facets=facets,
        schedules=firer,
        relay=relay,
        metrics=metrics,
        gc=gc,
        promoter=promoter,
        promotion_signal=promotion_signal,
        end_held_requests=end_held_requests,
    )


def sandbox_env(settings: Settings, endpoint: str) -> dict[str, str]:
    """What a sandbox gets from the service, as on Lambda: where the durable API is and a
    region. Credentials are per tenant (`SandboxKeys.env`)."""
    env = {
        "AWS_ENDPOINT_URL_LAMBDA": endpoint,
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
    }
    if settings.durable_channel:
        env[DURABLE_CHANNEL_FLAG] = "1"
    return env
