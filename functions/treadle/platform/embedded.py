"""The embedded backend: SQLite stores, local files, the local sandbox and an in-process
scheduler over the timer rows, all under the data directory."""

from __future__ import annotations

from treadle.adapters.cron import CronCalendar
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.local.doorbell import PROMOTE, SCHEDULES, Doorbells
from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.local.scheduler import TimerScheduler
from treadle.adapters.sqlite.audit import SqliteAuditLog
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.last_used import SqliteLastUsed
from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.adapters.sqlite.notifications import SqliteStatusEvents, SqliteWebhookStore
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.adapters.sqlite.repo_tokens import SqliteTokenStore
from treadle.adapters.sqlite.schedules import SqliteScheduleStore
from treadle.adapters.sqlite.start_queue import SqliteStartQueue
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.adapters.webhooks.http_sender import HttpWebhookSender
from treadle.app.promoter import PromoterLoop
from treadle.artifacts import Repositories
from treadle.domain.ports import Timer
from treadle.platform.base import Background, Platform
from treadle.platform.core import Ports
from treadle.platform.integrity import check_data_dir
from treadle.platform.loops import Periodic
from treadle.platform.schedule_loop import ScheduleLoop
from treadle.tenancy.admin import TenantAdmin

RELAY_INTERVAL_S = 0.5
# Records past the retention are already hidden from reads; the purge only frees space.
AUDIT_PURGE_INTERVAL_S = 3600.0
# The promoter's safety scan; a close wakes it at once (app/promoter.py).
PROMOTE_INTERVAL_S = 1.0


class EmbeddedPlatform(Platform):
    db: Database | None = None
    audit: SqliteAuditLog | None = None
    schedule_store: SqliteScheduleStore | None = None
    doorbells: Doorbells | None = None
    # The scheduler thread looks as often as it likes: a buffered firing starts within
    # seconds of the previous execution's close.
    schedule_recheck_ms = 2_000

    def _ports(self) -> Ports:
        data = self.settings.data_dir
        part = self.partition
        if part.primary:
            # Before any store opens a file: a damaged one stops the start with its name.
            check_data_dir(data)
        self.db = Database(data / "treadle.db")
        executions = SqliteExecutionStore(self.db, partition=part)
        code = LocalCodeStore(data / "code", clean=part.primary)
        logs = SqliteLogStore(data / "logs.db")
        # The scheduler fires timers into the engine, which is built after it.
        self.scheduler = TimerScheduler(
            executions,
            self.clock,
            self._fire,
            invoke_workers=self.settings.invoke_concurrency,
            partition=part,
            ring=None if part.whole else self._ring,
        )
        if not part.whole:
            self.doorbells = Doorbells(
                data / "run", part.index, self.scheduler.wake, self._signalled
            )
        runtime = self._local_sandbox(code, logs)
        # One process: only its own stores write their files (it holds the lock), so their
        # caches need not look for other writers.
        functions = SqliteFunctionStore(self.db, sole_writer=part.whole)
        self.schedule_store = SqliteScheduleStore(data / "schedules.db")
        tenant_store = SqliteTenantStore(data / "tenants.db", sole_writer=part.whole)
        refs = SqliteRefStore(data / "git" / "refs.db")
        # Each file's audit table holds the records of its own changes; read merged.
        self.audit = SqliteAuditLog(
            [self.db.file, tenant_store.file, refs.file],
            now_ms=self.clock.now_ms,
            retention_days=self.settings.audit_retention_days,
        )
        return Ports(
            executions=executions,
            functions=functions,
            aliases=functions,
            code=code,
            logs=logs,
            tenants=TenantAdmin(tenant_store, self.clock),
            repositories=Repositories(
                LocalObjectStore(data / "git" / "objects"),
                refs,
            ),
            tokens=SqliteTokenStore(data / "git" / "tokens.db"),
            runtime=runtime,
            dispatcher=self.scheduler,
            clock=self.clock,
            ids=self.ids,
            facets=self._local_facets(),
            schedules=self.schedule_store,
            calendar=CronCalendar(),
            status_events=SqliteStatusEvents(self.db),
            webhooks=SqliteWebhookStore(self.db),
            webhook_sender=HttpWebhookSender(),
            last_used=SqliteLastUsed(self.db),
            audit=self.audit,
            start_queue=SqliteStartQueue(self.db),
            lanes=self.scheduler,
        )

    def _fire(self, timer: Timer) -> None:
        self.engine.fire(timer)

    def _ring(self, index: int, due_ms: int) -> None:
        if self.doorbells is not None:
            self.doorbells.ring(index, due_ms)

    def _signalled(self, code: int) -> None:
        """Another process changed a schedule or freed capacity (the first process's)."""
        if code == SCHEDULES:
            self.schedules.changed()
        elif code == PROMOTE:
            self.promotion_signal.wake()

    def _tell_the_first(self) -> None:
        """In a process other than the first: its singletons hear of changes made here."""
        bells = self.doorbells
        if bells is None or self.partition.primary:
            return
        self.schedules.on_change(lambda: bells.signal(0, SCHEDULES))
        self.engine.slot_listeners = (
            *self.engine.slot_listeners,
            lambda arn: bells.signal(0, PROMOTE),
        )

    def _background(self) -> list[Background]:
        own: list[Background] = [self.scheduler]
        if self.doorbells is not None:
            own.insert(0, self.doorbells)
        if not self.partition.primary:
            # The first process runs the singletons below for all.
            self._tell_the_first()
            return own
        # Status changes reach webhooks within about a second of their commit.
        promoting: list[Background] = []
        if self.promoter is not None:
            promoting.append(PromoterLoop(self.promoter, self.promotion_signal, PROMOTE_INTERVAL_S))
        return [
            *promoting,
            *own,
            ScheduleLoop(self.schedules, self.clock),
            Periodic("relay", RELAY_INTERVAL_S, self.relay.run_once),
            Periodic("audit retention", AUDIT_PURGE_INTERVAL_S, self._purge_audit),
            Periodic("gc", self.settings.gc_interval_s, self.gc.run_all),
        ]

    def _purge_audit(self) -> None:
        if self.audit is not None:
            self.audit.purge_expired()

    def _close_adapters(self) -> None:
        if self.doorbells is not None:
            self.doorbells.stop()
        if self.db is not None:
            self.db.close()
        if self.schedule_store is not None:
            self.schedule_store.close()
