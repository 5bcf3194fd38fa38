"""What every `TenantStore` does alike: drawing free account ids and access key ids.

Shared rules in this base, storage in the backends' hooks (SQLite, DynamoDB). A hook
writes what it is given atomically or not at all, and raises `IdTaken` when a generated
id is already in use; the base then draws another, a bounded number of times.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Final, Literal

from treadle.domain.audit import AuditRecord
from treadle.domain.errors import AlreadyExists, Conflict, TreadleError
from treadle.tenancy.models import AccessKey, Quotas, Tenant, new_access_key, new_account_id

log = logging.getLogger(__name__)

# Random ids collide with negligible odds; a few retries make it impossible in practice.
ID_ATTEMPTS: Final = 8


class IdTaken(TreadleError):
    """A generated id is in use: draw another."""

    def __init__(self, what: Literal["tenant", "key"]) -> None:
        super().__init__(f"the {what} id is taken")
        self.what = what


class TenantStoreBase(ABC):
    """Id allocation of the tenant stores (see the module docstring)."""

    def create_tenant(
        self,
        name: str,
        *,
        now_ms: int,
        account_id: str | None = None,
        quotas: Quotas | None = None,
        audit: AuditRecord | None = None,
    ) -> Tenant:
        return self._create(name, now_ms, account_id, quotas, audit, with_key=False)[0]

    def create_tenant_with_key(
        self,
        name: str,
        *,
        now_ms: int,
        account_id: str | None = None,
        quotas: Quotas | None = None,
        audit: AuditRecord | None = None,
    ) -> tuple[Tenant, AccessKey]:
        tenant, access = self._create(name, now_ms, account_id, quotas, audit, with_key=True)
        assert access is not None  # with_key=True always makes one
        return tenant, access

    def _create(
        self,
        name: str,
        now_ms: int,
        account_id: str | None,
        quotas: Quotas | None,
        audit: AuditRecord | None,
        *,
        with_key: bool,
    ) -> tuple[Tenant, AccessKey | None]:
        for _ in range(ID_ATTEMPTS):
            tenant = Tenant(
                account_id=account_id or new_account_id(),
                name=name,
                created_ms=now_ms,
                quotas=quotas or Quotas(),
            )
            access = new_access_key(tenant.account_id, now_ms) if with_key else None
            try:
                # The id is drawn here: the record names the tenant it created.
                record = audit and audit.model_copy(
                    update={"tenant": tenant.account_id, "resource": _path(tenant.account_id)}
                )
                self._insert_tenant(tenant, access, record)
            except IdTaken as taken:
                if taken.what == "tenant" and account_id is not None:
                    raise AlreadyExists(f"Tenant {account_id} already exists.") from None
                log.info("generated %s id was taken; drawing another", taken.what)
                continue
            return tenant, access
        raise Conflict("Could not allocate a free account id or access key id; try again.")

    def create_key(
        self, account_id: str, *, now_ms: int, audit: AuditRecord | None = None
    ) -> AccessKey:
        for _ in range(ID_ATTEMPTS):
            access = new_access_key(account_id, now_ms)
            try:
                self._insert_key(access, _keyed(audit, access))
            except IdTaken:
                continue
            return access
        raise Conflict("Could not allocate a free access key id; try again.")

    def rotate_key(
        self,
        account_id: str,
        access_key_id: str,
        *,
        now_ms: int,
        audit: AuditRecord | None = None,
    ) -> AccessKey:
        for _ in range(ID_ATTEMPTS):
            access = new_access_key(account_id, now_ms)
            try:
                self._replace_key(access_key_id, access, audit)
            except IdTaken:
                continue
            return access
        raise Conflict("Could not allocate a free access key id; try again.")

    # -- storage hooks ---------------------------------------------------------------

    @abstractmethod
    def _insert_tenant(
        self, tenant: Tenant, access: AccessKey | None, audit: AuditRecord | None
    ) -> None:
        """Write a new tenant (and its first key): IdTaken if an id is in use."""

    @abstractmethod
    def _insert_key(self, access: AccessKey, audit: AuditRecord | None) -> None:
        """Write a new key of `access.tenant`: NotFound without that tenant, or IdTaken."""

    @abstractmethod
    def _replace_key(self, old_key_id: str, access: AccessKey, audit: AuditRecord | None) -> None:
        """Deactivate `old_key_id` and write `access`, atomically.

        NotFound if the old key is not `access.tenant`'s, Conflict if it is not
        active, IdTaken if the new key id is in use.
        """


def _path(account_id: str) -> str:
    return f"/v1/tenants/{account_id}"


def _keyed(audit: AuditRecord | None, access: AccessKey) -> AuditRecord | None:
    """The record of a new key names it (its id is drawn here)."""
    if audit is None:
        return None
    return audit.model_copy(
        update={"resource": f"{_path(access.tenant)}/keys/{access.access_key_id}"}
    )
