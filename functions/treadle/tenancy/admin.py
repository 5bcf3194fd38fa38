"""Tenant administration (the use cases behind `/v1/tenants`) and quota enforcement."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treadle.domain.audit import AuditRecord, pending_record
from treadle.domain.errors import InvalidParameter, NotFound
from treadle.domain.ports import Clock
from treadle.tenancy.credentials import read_profile, write_shared_credentials
from treadle.tenancy.errors import (
    CodeStorageExceeded,
    RateExceeded,
    ServiceQuotaExceeded,
    SingleTenantMode,
)
from treadle.tenancy.models import AccessKey, Egress, KeyStatus, Quotas, Tenant
from treadle.tenancy.ports import EgressEnforcer, KeySecret, SecretLookup, TenantStore

# Where tenant code runs in Lambda, its network is the Lambda's (docs/security.md).
NO_ENFORCER = "tenant code does not run in a local sandbox here, so no egress policy is enforced"


def _about(account_id: str) -> AuditRecord | None:
    """The current request's record, about that tenant (the admin has none of its own)."""
    return pending_record(tenant=account_id)


class TenantAdmin:
    """What the platform admin may do; every call is one atomic store operation."""

    def __init__(self, store: TenantStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        # Why the platform keeps to one tenant (None: tenants are isolated).
        self.single_tenant_reason: str | None = None
        self.egress: EgressEnforcer | None = None

    def enforce_egress_with(self, enforcer: EgressEnforcer) -> None:
        """What applies tenants' egress policies to their running code."""
        self.egress = enforcer

    def keep_to_one_tenant(self, reason: str) -> None:
        """From now on, refuse a tenant beside the first: `reason` says why."""
        self.single_tenant_reason = reason

    def create_tenant(
        self, name: str, *, account_id: str | None = None, quotas: Quotas | None = None
    ) -> tuple[Tenant, AccessKey]:
        """A tenant with its first key: the only time the secret is handed out."""
        if self.single_tenant_reason is not None and self.store.list_tenants(None, 1)[0]:
            raise SingleTenantMode(
                "This platform runs in single-tenant mode: "
                f"{self.single_tenant_reason}. A second tenant's code could read or "
                "disturb the first's; restart with --insecure-multi-tenant to accept that."
            )
        return self.store.create_tenant_with_key(
            name,
            now_ms=self.clock.now_ms(),
            account_id=account_id,
            quotas=quotas,
            audit=pending_record(),
        )

    def get_tenant(self, account_id: str) -> Tenant:
        return self.store.get_tenant(account_id)

    def list_tenants(
        self, marker: str | None = None, limit: int = 100
    ) -> tuple[list[Tenant], str | None]:
        return self.store.list_tenants(marker, limit)

    def disable_tenant(self, account_id: str) -> Tenant:
        # Takes effect on the next request: lookup_secret refuses a disabled tenant's keys.
        return self.store.set_tenant_disabled(account_id, True, audit=_about(account_id))

    def enable_tenant(self, account_id: str) -> Tenant:
        return self.store.set_tenant_disabled(account_id, False, audit=_about(account_id))

    def update_quotas(self, account_id: str, changes: Mapping[str, Any]) -> Tenant:
        """Change some quotas, keep the others; pydantic refuses unknown or bad values."""
        current = self.store.get_tenant(account_id).quotas
        quotas = Quotas.model_validate({**current.model_dump(), **changes})
        return self.store.update_quotas(account_id, quotas, audit=_about(account_id))

    def update_egress(self, account_id: str, egress: Egress) -> Tenant:
        """Store the policy, then enforce it: a policy this host cannot enforce is
        refused rather than stored and silently not enforced."""
        refusal = NO_ENFORCER if self.egress is None else self.egress.egress_refusal(egress)
        if egress != "none" and refusal is not None:
            raise InvalidParameter(
                f"Egress policy {egress!r} cannot be enforced on this host: {refusal}."
            )
        tenant = self.store.update_egress(account_id, egress, audit=_about(account_id))
        if self.egress is not None:
            self.egress.apply_egress(account_id, egress)
        return tenant

    def create_key(self, account_id: str) -> AccessKey:
        return self.store.create_key(
            account_id, now_ms=self.clock.now_ms(), audit=_about(account_id)
        )

    def list_keys(self, account_id: str) -> list[AccessKey]:
        return self.store.list_keys(account_id)

    def disable_key(self, account_id: str, access_key_id: str) -> AccessKey:
        return self.store.set_key_status(
            account_id, access_key_id, KeyStatus.INACTIVE, audit=_about(account_id)
        )

    def enable_key(self, account_id: str, access_key_id: str) -> AccessKey:
        return self.store.set_key_status(
            account_id, access_key_id, KeyStatus.ACTIVE, audit=_about(account_id)
        )

    def rotate_key(self, account_id: str, access_key_id: str) -> AccessKey:
        return self.store.rotate_key(
            account_id, access_key_id, now_ms=self.clock.now_ms(), audit=_about(account_id)
        )

    def is_enabled(self, account_id: str) -> bool:
        """Whether the tenant exists and is not disabled (what its repository tokens need)."""
        try:
            return not self.store.get_tenant(account_id).disabled
        except NotFound:
            return False

    def lookup_secret(self, access_key_id: str) -> KeySecret | None:
        """The `SecretLookup` of the verifiers: only active keys of enabled tenants."""
        found = self.store.find_key(access_key_id)
        if found is None:
            return None
        key, tenant = found
        if not key.active or tenant.disabled:
            return None
        return KeySecret(tenant.account_id, key.secret.get_secret_value())


def single_key_lookup(access_key_id: str, secret: str, principal: str) -> SecretLookup:
    """A lookup knowing one key: e.g. the platform admin credential for `/v1/tenants`."""

    def lookup(candidate: str) -> KeySecret | None:
        return KeySecret(principal, secret) if candidate == access_key_id else None

    return lookup


def ensure_dev_tenant(
    admin: TenantAdmin,
    credentials_path: Path,
    *,
    account_id: str,
    region: str,
    name: str = "default",
    profile: str = "treadle",
    quotas: Quotas | None = None,
) -> tuple[Tenant, AccessKey]:
    """`treadle dev` start-up: the default tenant, an active key, and the profile.

    Idempotent. The profile is (re)written only when it does not already name an
    active key of this tenant, so a user's edits (e.g. its region) survive restarts.
    """
    try:
        tenant = admin.get_tenant(account_id)
        active = [k for k in admin.list_keys(account_id) if k.active]
        key = active[-1] if active else admin.create_key(account_id)
    except NotFound:
        tenant, key = admin.create_tenant(name, account_id=account_id, quotas=quotas)
        active = [key]
    current = read_profile(credentials_path, profile)
    current_id = (current or {}).get("aws_access_key_id")
    if current_id not in {k.access_key_id for k in active}:
        write_shared_credentials(
            credentials_path, profile, key.access_key_id, key.secret.get_secret_value(), region
        )
    return tenant, key


# -- quotas --------------------------------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    updated: float  # monotonic seconds


class QuotaGuard:
    """Enforces a tenant's quotas: a token bucket for starts, plain checks for counts.

    Counts are passed in as they would be *after* the request (including the function
    being created, the code being stored, the execution being started), so the check
    is `value > quota`. The bucket is per process, like the replay memory: with
    `processes` server processes on one data directory each holds its share of the rate.
    """

    def __init__(
        self, monotonic: Callable[[], float] = time.monotonic, *, processes: int = 1
    ) -> None:
        self._monotonic = monotonic
        self._share = max(1, processes)
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def check_starts(self, tenant: Tenant) -> None:
        """Take one start from the tenant's bucket or raise TooManyRequestsException.

        Capacity is one second's worth (at least 1): a burst up to the rate, then the
        steady rate. Quota changes apply at once because the rate is read on each call.
        """
        rate = tenant.quotas.max_starts_per_second / self._share
        capacity = max(1.0, rate)
        now = self._monotonic()
        with self._lock:
            bucket = self._buckets.get(tenant.account_id)
            if bucket is None:
                bucket = self._buckets[tenant.account_id] = _Bucket(capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens < 1.0:
                wait_s = (1.0 - bucket.tokens) / rate
                raise RateExceeded(
                    f"Rate exceeded: account {tenant.account_id} may start "
                    f"{tenant.quotas.max_starts_per_second:g} executions per second.",
                    reason="CallerRateLimitExceeded",
                    retry_after_s=math.ceil(wait_s * 1000) / 1000,
                )
            bucket.tokens -= 1.0

    @staticmethod
    def check_functions(tenant: Tenant, count: int) -> None:
        limit = tenant.quotas.max_functions
        if count > limit:
            raise ServiceQuotaExceeded(
                f"The number of functions of account {tenant.account_id} would exceed "
                f"its quota of {limit}."
            )

    @staticmethod
    def check_code_bytes(tenant: Tenant, total_bytes: int) -> None:
        limit = tenant.quotas.max_code_bytes
        if total_bytes > limit:
            raise CodeStorageExceeded(
                f"Code storage limit exceeded: account {tenant.account_id} would store "
                f"{total_bytes} bytes of code, over its quota of {limit}."
            )

    def try_start(self, tenant: Tenant) -> bool:
        """Take one start from the bucket if there is one (the promoter's check)."""
        try:
            self.check_starts(tenant)
        except RateExceeded:
            return False
        return True

    @staticmethod
    def check_queued(tenant: Tenant, queued: int) -> None:
        _concurrency(tenant, queued, tenant.quotas.max_queued, "queued")

    @staticmethod
    def check_running(tenant: Tenant, running: int) -> None:
        # 429, as Lambda's concurrency throttle: running executions end, so a client
        # backing off and retrying is the right reaction.
        _concurrency(tenant, running, tenant.quotas.max_running_executions, "running")


def _concurrency(tenant: Tenant, count: int, limit: int, what: str) -> None:
    if count > limit:
        raise RateExceeded(
            f"Rate exceeded: account {tenant.account_id} has reached its quota of "
            f"{limit} {what} executions.",
            reason="ConcurrentInvocationLimitExceeded",
            retry_after_s=1.0,
        )
