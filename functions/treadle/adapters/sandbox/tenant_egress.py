"""The tenancy `EgressEnforcer` over the local sandbox: stored policies reach tenants'
network namespaces, when they are made and when an admin changes one.

Apart from `sandbox.py` because the sandbox package is what workers import, and must
hold none of the platform's domain (tests/integration/test_sandbox.py checks it).
"""

from __future__ import annotations

from treadle.adapters.sandbox.egress import EgressError, Policy
from treadle.adapters.sandbox.sandbox import LocalSandbox
from treadle.domain.errors import NotFound, Unavailable
from treadle.tenancy.models import Egress
from treadle.tenancy.ports import TenantStore


class SandboxEgress:
    def __init__(self, sandbox: LocalSandbox, tenants: TenantStore) -> None:
        self._sandbox = sandbox
        self._tenants = tenants
        sandbox.egress_policies(self._stored)

    def _stored(self, tenant: str) -> Policy:
        try:
            return self._tenants.get_tenant(tenant).egress
        except NotFound:
            return "none"  # code run for no known tenant (a platform's own tests)

    def egress_refusal(self, egress: Egress) -> str | None:
        return self._sandbox.egress_refusal(egress)

    def apply_egress(self, account_id: str, egress: Egress) -> None:
        try:
            self._sandbox.apply_egress(account_id, egress)
        except EgressError as exc:
            raise Unavailable(
                f"The egress policy is stored but could not be applied ({exc}); the "
                "tenant's code has no network until it is applied (retry the change)."
            ) from exc
