"""Ports of the tenancy package: the tenant store and the secret lookup of verifiers."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from treadle.domain.audit import AuditRecord
from treadle.tenancy.models import AccessKey, Egress, KeyStatus, Quotas, Tenant


class KeySecret(NamedTuple):
    """What a verifier needs about an access key: whose it is and its secret."""

    tenant: str
    secret: str


# Returns None for an unknown key, an inactive key or a disabled tenant: verifiers
# refuse all three the same way, as AWS does.
SecretLookup = Callable[[str], KeySecret | None]


class EgressEnforcer(Protocol):
    """Where tenant code runs, what enforces each tenant's egress policy."""

    def egress_refusal(self, egress: Egress) -> str | None:
        """Why `egress` cannot be enforced here (None: it can)."""

    def apply_egress(self, account_id: str, egress: Egress) -> None:
        """Enforce the tenant's new policy on its code from now on. `Unavailable` when
        it could not: the tenant's code is then left with no network at all."""


class TenantStore(Protocol):
    """Tenants and their access keys. Every method is atomic.

    `audit`: the change's audit record, written in the same transaction (domain/audit.py).

    Errors: `NotFound` for an unknown tenant or a key that is not that tenant's,
    `AlreadyExists` for a taken account id, `Conflict` for rotating an inactive key.
    """

    def create_tenant(
        self,
        name: str,
        *,
        now_ms: int,
        account_id: str | None = None,
        quotas: Quotas | None = None,
        audit: AuditRecord | None = None,
    ) -> Tenant:
        """A new tenant; the account id is generated (unique) when not given."""

    def create_tenant_with_key(
        self,
        name: str,
        *,
        now_ms: int,
        account_id: str | None = None,
        quotas: Quotas | None = None,
        audit: AuditRecord | None = None,
    ) -> tuple[Tenant, AccessKey]:
        """A new tenant and its first active key, in one transaction."""

    def get_tenant(self, account_id: str) -> Tenant: ...

    def list_tenants(
        self, marker: str | None = None, limit: int = 100
    ) -> tuple[list[Tenant], str | None]:
        """Tenants by account id after `marker`; the second value is the next marker."""

    def set_tenant_disabled(
        self, account_id: str, disabled: bool, *, audit: AuditRecord | None = None
    ) -> Tenant: ...

    def update_quotas(
        self, account_id: str, quotas: Quotas, *, audit: AuditRecord | None = None
    ) -> Tenant: ...

    def update_egress(
        self, account_id: str, egress: Egress, *, audit: AuditRecord | None = None
    ) -> Tenant: ...

    def create_key(
        self, account_id: str, *, now_ms: int, audit: AuditRecord | None = None
    ) -> AccessKey: ...

    def list_keys(self, account_id: str) -> list[AccessKey]:
        """The tenant's keys, oldest first."""

    def set_key_status(
        self,
        account_id: str,
        access_key_id: str,
        status: KeyStatus,
        *,
        audit: AuditRecord | None = None,
    ) -> AccessKey:
        """NotFound when the key belongs to another tenant: one never touches another's."""

    def rotate_key(
        self,
        account_id: str,
        access_key_id: str,
        *,
        now_ms: int,
        audit: AuditRecord | None = None,
    ) -> AccessKey:
        """Create a new active key and deactivate `access_key_id`, atomically.

        The old key must be active (else `Conflict`), so two concurrent rotations of
        the same key leave one new key, not two.
        """

    def find_key(self, access_key_id: str) -> tuple[AccessKey, Tenant] | None:
        """The key and its owning tenant, whatever their status."""
