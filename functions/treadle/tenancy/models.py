"""Tenant, access key and quota records, and the generators of their identifiers."""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, TypeAdapter

from treadle.domain.gc import GcPolicy
from treadle.domain.models import (
    DEFAULT_MAX_HISTORY_BYTES,
    DEFAULT_MAX_OPERATIONS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    ExecutionLimits,
)

ACCOUNT_ID_PATTERN = r"^\d{12}$"
# AWS long-term key ids are "AKIA" + 16 characters of the base32 alphabet.
ACCESS_KEY_ID_PATTERN = r"^AKIA[A-Z2-7]{16}$"
_KEY_ID_ALPHABET = string.ascii_uppercase + "234567"
# AWS secrets are 40 characters of base64 (with '+' and '/'). Ours are 40 alphanumerics
# (~238 bits): the same length, but safe unescaped in a Git URL's userinfo and in INI.
_SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40


class KeyStatus(StrEnum):
    ACTIVE = "Active"  # IAM's spelling, which the AWS CLI users know
    INACTIVE = "Inactive"


MAX_PAYLOAD_BYTES_PER_OPERATION = 6 * 1024 * 1024


class Quotas(BaseModel):
    """Per-tenant limits. Defaults suit a shared self-hosted install; admins raise them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_functions: int = Field(default=500, ge=0)
    max_code_bytes: int = Field(default=5 * 1024**3, ge=0)  # total stored zips
    max_running_executions: int = Field(default=1000, ge=0)
    max_starts_per_second: float = Field(default=20.0, gt=0)
    # Starts accepted as QUEUED beyond the running limit or the start rate; past it a
    # start is refused (429). Cloudflare allows 2,000,000; 100,000 suits a shared install.
    max_queued: int = Field(default=100_000, ge=0)
    max_facets: int = Field(default=100, ge=0)
    # One facet's database; a write past it fails with FacetFull (SQLITE_FULL).
    max_facet_bytes: int = Field(default=256 * 1024**2, ge=0)
    # Per execution, pinned when it starts (docs/limits.md); defaults are AWS's.
    max_operations_per_execution: int = Field(default=DEFAULT_MAX_OPERATIONS, ge=1)
    max_history_bytes_per_execution: int = Field(default=DEFAULT_MAX_HISTORY_BYTES, ge=1)
    # At most a whole request (6 MiB, `Settings.max_request_bytes`): nothing larger
    # could reach a checkpoint anyway.
    max_payload_bytes_per_operation: int = Field(
        default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1, le=MAX_PAYLOAD_BYTES_PER_OPERATION
    )
    # Kept with the quotas (one JSON document on both backends, changed by the same
    # atomic `update_quotas`), shown apart as `gcPolicy` on the wire.
    gc: GcPolicy = Field(default_factory=GcPolicy)

    def execution_limits(self) -> ExecutionLimits:
        """What an execution started now is pinned to."""
        return ExecutionLimits(
            max_operations=self.max_operations_per_execution,
            max_history_bytes=self.max_history_bytes_per_execution,
            max_payload_bytes=self.max_payload_bytes_per_operation,
        )


_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
MAX_EGRESS_RULES = 64


def _egress_rule(rule: str) -> str:
    """`host:port`, `IP[:port]`, `CIDR[:port]` (IPv6 in brackets when a port follows)."""
    address, port = rule, None
    if rule.startswith("["):
        address, sep, rest = rule[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"not an egress rule: {rule!r}")
        port = rest[1:] if rest else None
    elif rule.count(":") == 1:
        address, port = rule.split(":")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"not a port (1-65535) in egress rule {rule!r}")
    try:
        ipaddress.ip_network(address, strict=True)
    except ValueError:
        # A name is resolved when the rule is enforced; without a port it would open
        # every service of whatever it resolves to.
        if not _HOST.fullmatch(address) or port is None:
            raise ValueError(
                f"not an egress rule: {rule!r} (host:port, or an IP address or CIDR "
                "with an optional :port)"
            ) from None
    return rule


EgressRule = Annotated[str, AfterValidator(_egress_rule)]
# What a tenant's code may reach on the network: "none" (loopback only, its platform
# endpoint included), "all", or only these destinations.
Egress = (
    Literal["none", "all"]
    | Annotated[list[EgressRule], Field(min_length=1, max_length=MAX_EGRESS_RULES)]
)
EGRESS = TypeAdapter[Egress](Egress)


class Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str = Field(pattern=ACCOUNT_ID_PATTERN)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
    created_ms: int = Field(ge=0)
    disabled: bool = False
    quotas: Quotas = Field(default_factory=Quotas)
    egress: Egress = "none"


class AccessKey(BaseModel):
    """A key pair of one tenant.

    The secret is kept in plain text by the store: SigV4 verification must recompute
    the HMAC with it, so a one-way hash cannot work. The SQLite file is created 0600
    (owner only); encryption at rest is out of scope. `SecretStr` keeps it out of
    reprs and logs; read it with `secret.get_secret_value()`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_id: str = Field(pattern=ACCESS_KEY_ID_PATTERN)
    tenant: str = Field(pattern=ACCOUNT_ID_PATTERN)
    secret: SecretStr
    status: KeyStatus = KeyStatus.ACTIVE
    created_ms: int = Field(ge=0)

    @property
    def active(self) -> bool:
        return self.status is KeyStatus.ACTIVE


def new_account_id() -> str:
    # Never a leading zero: some tools treat account ids as numbers and drop it.
    return str(secrets.randbelow(9 * 10**11) + 10**11)


def new_access_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))


def new_secret() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def new_access_key(tenant: str, now_ms: int) -> AccessKey:
    return AccessKey(
        access_key_id=new_access_key_id(),
        tenant=tenant,
        secret=SecretStr(new_secret()),
        created_ms=now_ms,
    )
