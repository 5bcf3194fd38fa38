"""The AWS composition root: the same engine, use cases and HTTP app over AWS adapters.

Built once per process from `Settings`: by each platform Lambda container
(`treadle.entrypoints`) and by `treadle dev --backend aws`, which points every client
at `AWS_ENDPOINT_URL` (a moto server, LocalStack) and then also plays the orchestrator
and sweep Lambdas in threads (`loops`).

| port | adapter |
|---|---|
| ExecutionStore, FunctionStore, tenants, Git refs | DynamoDB, one table |
| Git packs, code zips, big payloads | S3, one bucket |
| Dispatcher (timers) | SQS + the sweep |
| FunctionRuntime | Lambda; emulated: Lambda's control plane, code in the local sandbox |
| LogStore | CloudWatch Logs, the groups Lambda writes (`log_store="local"`: a file) |
| FacetStore | EFS, mounted here and per tenant access point in its Lambdas; unset: local files |
| ScheduleStore | DynamoDB, the same table; fired by the sweep |

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from treadle.adapters.aws.cloudwatch_logs import CloudWatchLogStore
from treadle.adapters.aws.dynamodb_audit import DynamoAuditLog
from treadle.adapters.aws.dynamodb_executions import DynamoExecutionStore
from treadle.adapters.aws.dynamodb_functions import DynamoFunctionStore
from treadle.adapters.aws.dynamodb_last_used import DynamoLastUsed
from treadle.adapters.aws.dynamodb_notifications import DynamoStatusEvents, DynamoWebhookStore
from treadle.adapters.aws.dynamodb_refs import DynamoRefStore
from treadle.adapters.aws.dynamodb_repo_tokens import DynamoTokenStore
from treadle.adapters.aws.dynamodb_schedules import DynamoScheduleStore
from treadle.adapters.aws.dynamodb_tenants import DynamoTenantStore
from treadle.adapters.aws.efs_facets import EfsFacetStore
from treadle.adapters.aws.eventbridge import EventBridgePublisher
from treadle.adapters.aws.lambda_mounts import TenantMount, no_mount
from treadle.adapters.aws.lambda_runtime import Invoker, LambdaRuntime
from treadle.adapters.aws.resources import AwsClients, provision, read_admin_key, read_secret
from treadle.adapters.aws.s3_code import S3CodeStore
from treadle.adapters.aws.s3_objects import S3ObjectStore
from treadle.adapters.aws.sqs_dispatcher import SqsDispatcher, handle_messages
from treadle.adapters.aws.start_queue import DynamoStartQueue
from treadle.adapters.aws.sweep import DynamoTimerLookup, SweepReport, resend_due, sweep
from treadle.adapters.cron import CronCalendar
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.adapters.webhooks.http_sender import HttpWebhookSender
from treadle.app.gc import GC_REMOVALS_PER_SWEEP, gc_due
from treadle.app.promoter import PromoterLoop
from treadle.app.schedule_firing import TickReport
from treadle.artifacts import Repositories
from treadle.domain.errors import StorageFull, TreadleError
from treadle.domain.logs import LogStore
from treadle.facets import FacetStore
from treadle.platform.base import Background, Platform, StartupError
from treadle.platform.core import Ports
from treadle.platform.loops import Periodic, QueuePoller
from treadle.settings import (
    ENV_FACETS_MOUNT_PATH,
    ENV_QUEUE_URL,
    ENV_TENANT_LAYER_ARN,
    ENV_TENANT_ROLE_ARN,
    Settings,
)
from treadle.tenancy.admin import TenantAdmin

log = logging.getLogger(__name__)

# What the API Lambda promotes inline after a request that freed capacity.
API_PROMOTIONS = 1
# `treadle dev --backend aws`: the promoter's safety scan, as on the embedded backend.
PROMOTE_INTERVAL_S = 1.0
# A bounded share of a Lambda's run (each promotion is a read, a transaction and an SQS
# send): the rest waits for the next batch, which the promoted starts' own timers make.
PROMOTIONS_PER_CALL = 100


def derived_admin_key(token_secret: bytes) -> tuple[str, str]:
    """The admin's key pair as a function of the token key (see the module docstring)."""
    digest = hmac.new(token_secret, b"treadle-admin-key", hashlib.sha256).digest()
    key_id = "AKIA" + base64.b32encode(digest[:10]).decode()[:16]
    secret = base64.b64encode(digest[10:], altchars=b"ab").decode()[:40]
    return key_id, secret


class AwsPlatform(Platform):
    queue_url: str
    role_arn: str
    efs_facets: EfsFacetStore

    def __init__(
        self,
        settings: Settings,
        *,
        endpoint: str | None = None,
        clients: AwsClients | None = None,
        create_resources: bool | None = None,
    ) -> None:
        """`create_resources` (default: emulated) creates a missing table, bucket, queue and
        tenant role; on AWS the stack made them and the settings name them."""
        self._create_resources = settings.emulated if create_resources is None else create_resources
        try:
            self.clients = clients or AwsClients.create(settings.region, settings.aws_endpoint_url)
            self.table, self.bucket = settings.table_name, settings.bucket_name
            super().__init__(settings, endpoint=endpoint)
        except StartupError:
            raise
        except (BotoCoreError, ClientError, TreadleError) as exc:
            # Adapters translate most ClientErrors (Unavailable, ...); the user needs to
            # know where the backend is unreachable or refused, whichever the layer.
            where = settings.aws_endpoint_url or "AWS"
            raise StartupError(f"cannot set up the AWS backend at {where}: {exc}") from exc

    def _secrets(self) -> tuple[bytes, tuple[str, str]]:
        settings = self.settings
        queue_url, role_arn = settings.queue_url, settings.tenant_role_arn
        if self._create_resources:
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
            raise StartupError(f"The AWS backend needs {ENV_QUEUE_URL} and {ENV_TENANT_ROLE_ARN}.")
        self.queue_url, self.role_arn = queue_url, role_arn
        if settings.token_secret_arn:
            token_secret = read_secret(self.clients.secrets, settings.token_secret_arn)
        else:
            token_secret = settings.token_secret()
        if settings.admin_secret_arn and not settings.admin_access_key_id:
            admin_key = read_admin_key(self.clients.secrets, settings.admin_secret_arn)
        elif settings.admin_access_key_id or not settings.token_secret_arn:
            admin_key = settings.admin_key()
        else:
            admin_key = derived_admin_key(token_secret)
        return token_secret, admin_key

    def _ports(self) -> Ports:
        settings = self.settings
        ddb, s3 = self.clients.dynamodb, self.clients.s3
        days = self.settings.audit_retention_days
        self.executions_store = DynamoExecutionStore(
            ddb, self.table, s3_client=s3, bucket=self.bucket, audit_retention_days=days
        )
        self.functions_store = DynamoFunctionStore(
            ddb,
            self.table,
            audit_retention_days=days,
            s3_client=s3,
            bucket=self.bucket,
            now_ms=self.clock.now_ms,
            # As long as GC's own grace: a deploy's last old requests are over by then.
            code_backfill_second_pass_ms=settings.gc_pack_grace_s * 1000,
        )
        code = S3CodeStore(s3, self.bucket, LocalCodeStore(settings.data_dir / "code"))
        logs: LogStore
        if settings.log_store == "local":
            logs = SqliteLogStore(settings.data_dir / "logs.db")
        else:
            # Emulators evaluate few filter patterns (moto: plain terms), AWS all of them.
            logs = CloudWatchLogStore(
                self.clients.logs, stage=settings.stage, filter_locally=settings.emulated
            )
        invoker: Invoker | None = None
        if settings.local_sandbox:
            invoker = self._local_sandbox(code, logs).invoke
        elif not settings.tenant_layer_arn:
            # Tenant Lambdas would sign with their role's STS credentials: refused.
            log.warning("%s is unset: tenant checkpoints will be refused", ENV_TENANT_LAYER_ARN)
        # After the local sandbox: local facets are shown to its workers.
        facets = self._facets()
        self.runtime = LambdaRuntime(
            self.clients.lambda_,
            stage=settings.stage,
            role_arn=self.role_arn,
            code=code,
            api_url=self.endpoint,
            invoker=invoker,
            # Tenant Lambdas sign checkpoints with their tenant's sandbox key.
            sandbox_credentials=self.sandbox_keys.for_tenant,
            layers=[settings.tenant_layer_arn] if settings.tenant_layer_arn else [],
            mounts=self._mount if isinstance(facets, EfsFacetStore) else no_mount,
        )
        self.dispatcher = SqsDispatcher(self.clients.sqs, self.queue_url)
        self.timer_lookup = DynamoTimerLookup(ddb, self.table)
        return Ports(
            executions=self.executions_store,
            functions=self.functions_store,
            aliases=self.functions_store,
            code=code,
            logs=logs,
            tenants=TenantAdmin(
                DynamoTenantStore(ddb, self.table, audit_retention_days=days), self.clock
            ),
            repositories=Repositories(
                S3ObjectStore(s3, self.bucket),
                DynamoRefStore(ddb, self.table, audit_retention_days=days),
            ),
            tokens=DynamoTokenStore(ddb, self.table),
            runtime=self.runtime,
            dispatcher=self.dispatcher,
            clock=self.clock,
            ids=self.ids,
            facets=facets,
            schedules=DynamoScheduleStore(ddb, self.table),
            calendar=CronCalendar(),
            status_events=DynamoStatusEvents(ddb, self.table),
            webhooks=DynamoWebhookStore(ddb, self.table),
            webhook_sender=HttpWebhookSender(),
            last_used=DynamoLastUsed(ddb, self.table),
            publishers=self._publishers(),
            # Retention is the items' TTL (dynamodb_audit): nothing to sweep.
            audit=DynamoAuditLog(ddb, self.table, now_ms=self.clock.now_ms, retention_days=days),
            start_queue=DynamoStartQueue(ddb, self.table),
        )

    def _publishers(self) -> list[EventBridgePublisher]:
        bus = self.settings.event_bus
        if not bus:
            return []
        return [EventBridgePublisher(self.clients.events, bus, self.settings.event_source)]

    def _facets(self) -> FacetStore:
        """Facets live where the code that opens them can reach them: on EFS when the
        stack made a file system (mounted here, and per tenant in its Lambdas), else the
        local sandbox's files."""
        settings = self.settings
        if not settings.facets_file_system_id or settings.local_sandbox:
            # Code in the local sandbox opens its facets here, bind-mounted into it.
            return self._local_facets()
        self.efs_facets = EfsFacetStore(
            self.clients.efs,
            file_system_id=settings.facets_file_system_id,
            mount_dir=Path(settings.facets_mount_path),
            stage=settings.stage,
        )
        return self.efs_facets

    def _mount(self, tenant: str) -> TenantMount:
        settings = self.settings
        return TenantMount(
            access_point_arn=self.efs_facets.access_point(tenant),
            mount_path=settings.facets_mount_path,
            subnet_ids=settings.tenant_subnet_ids,
            security_group_ids=settings.tenant_security_group_ids,
            env_name=ENV_FACETS_MOUNT_PATH,
        )

    def _rearm_timers(self) -> None:
        """Timer messages the last process had received die with it, invisible in the
        queue for its visibility timeout: this process is the only consumer (the data
        directory's lock), so every overdue timer is resent now rather than when the
        sweep's overdue net reaches it, a minute or more later. A copy still in the
        queue fires nothing twice (a delivered timer is checked against the table)."""
        resent = resend_due(self.executions_store, self.dispatcher, self.clock.now_ms())
        if resent:
            log.info("resent %d timers due while the platform was down", resent)

    def _background(self) -> list[Background]:
        # `treadle dev --backend aws` plays the orchestrator and sweep Lambdas in threads;
        # the Lambdas promote at the end of each batch and sweep, this process sooner.
        promoting: list[Background] = []
        if self.promoter is not None:
            promoting.append(PromoterLoop(self.promoter, self.promotion_signal, PROMOTE_INTERVAL_S))
        return [
            *promoting,
            QueuePoller(self.clients.sqs, self.queue_url, self.handle_messages),
            Periodic("sweep", self.settings.sweep_interval_s, self.sweep_and_fire),
            # The sweep relays too; here a tighter loop keeps webhooks prompt.
            Periodic("relay", 1.0, self.relay.run_once),
        ]

    # -- what the platform Lambdas do ------------------------------------------------

    def handle_messages(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """The orchestrator: fire the timers of an SQS batch, then promote the queued
        starts that capacity now allows; the ids that failed."""
        failed = handle_messages(
            records,
            self.engine.fire,
            current=self.timer_lookup,
            requeue=self.dispatcher,
            clock=self.clock,
        )
        # After every batch, not only one that closed an execution: one that parked one
        # frees capacity too, without a status change to tell. Costs one Query (the
        # backlog items) when no tenant has a backlog.
        self.promote_queued()
        return failed

    def promote_queued(self, limit: int = PROMOTIONS_PER_CALL) -> int:
        """Promote queued starts as far as capacity allows (app/promoter.py), at most
        `limit`, in this call: no thread outlives a Lambda invocation. A failure is
        logged, never raised: the fired timers stand, and the next batch or sweep
        promotes."""
        if self.promoter is None:
            return 0
        try:
            return self.promoter.promote(limit)
        except StorageFull as exc:
            log.warning("promoting queued starts failed: %s", exc)
        except Exception:
            log.exception("promoting queued starts failed; the next batch or sweep retries")
        return 0

    def promote_if_freed(self) -> int:
        """The API Lambda, after a request: a stop, pause or other change made here that
        freed capacity promotes the oldest queued start at once (one: the response waits
        for it) rather than at the next batch or sweep, up to a minute later. The start
        promoted sends its own timer, whose batch promotes the rest."""
        if not self.promotion_signal.take():
            return 0
        return self.promote_queued(API_PROMOTIONS)

    def sweep_and_fire(self) -> None:
        now = self.clock.now_ms()
        self.sweep(now)
        self.fire_schedules(now)
        self.promote_queued()
        self.collect_garbage(now)

    def collect_garbage(self, now_ms: int | None = None) -> int:
        """The sweep's third job: the run falling on a multiple of `gc_interval_s` applies
        the tenants' GC policies, at most `GC_REMOVALS_PER_SWEEP` removals (a Lambda's
        run is bounded; the next due run goes on). How many resources went."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        if not gc_due(now, self.settings.gc_interval_s, self.settings.sweep_interval_s):
            return 0
        return self.gc.run_all(limit=GC_REMOVALS_PER_SWEEP)

    def fire_schedules(self, now_ms: int | None = None) -> TickReport:
        """The sweep's second job: start the executions of the schedules due by now
        (`docs/schedules.md`: why the sweep rather than EventBridge Scheduler)."""
        return self.schedules.tick(now_ms)

    def sweep(self, now_ms: int | None = None) -> SweepReport:
        report = sweep(
            self.executions_store,
            self.dispatcher,
            self.clock.now_ms() if now_ms is None else now_ms,
            interval_s=self.settings.sweep_interval_s,
        )
        # Status changes to webhooks and EventBridge (docs/notifications.md): a failure
        # leaves them in the outbox for the next run and must not fail the timer sweep.
        try:
            self.relay.run_once()
        except TreadleError:
            log.exception("relaying status changes failed; the next sweep retries")
        return report
