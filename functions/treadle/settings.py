"""Platform settings: one pydantic model, validated at start-up.

Every environment variable name is defined here and nowhere else.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from treadle.files import write_atomically
from treadle.tenancy.models import new_access_key_id, new_secret

ENV_PREFIX = "TREADLE_"
ENV_DATA_DIR = "TREADLE_DATA_DIR"
ENV_HOST = "TREADLE_HOST"
ENV_PORT = "TREADLE_PORT"
ENV_REGION = "TREADLE_REGION"
ENV_ACCOUNT = "TREADLE_DEFAULT_ACCOUNT"
ENV_WAIT_TIME_SCALE = "TREADLE_WAIT_TIME_SCALE"
ENV_SANDBOX_WARM = "TREADLE_SANDBOX_WARM_PER_FUNCTION"
ENV_SANDBOX_INIT_AHEAD = "TREADLE_SANDBOX_INIT_AHEAD"
ENV_SANDBOX_IDLE = "TREADLE_SANDBOX_IDLE_SECONDS"
ENV_INVOKE_CONCURRENCY = "TREADLE_INVOKE_CONCURRENCY"
ENV_PROCESSES = "TREADLE_PROCESSES"
ENV_PIN_CORES = "TREADLE_PIN_CORES"
ENV_DURABLE_CHANNEL = "TREADLE_DURABLE_CHANNEL"
ENV_ADMIN_KEY_ID = "TREADLE_ADMIN_ACCESS_KEY_ID"
ENV_ADMIN_SECRET = "TREADLE_ADMIN_SECRET_ACCESS_KEY"
ENV_MAX_CLOCK_SKEW = "TREADLE_MAX_CLOCK_SKEW_SECONDS"
ENV_SYNC_INVOKE_WAIT = "TREADLE_SYNC_INVOKE_WAIT_SECONDS"
ENV_AUDIT_RETENTION = "TREADLE_AUDIT_RETENTION_DAYS"
ENV_GC_INTERVAL = "TREADLE_GC_INTERVAL_SECONDS"
ENV_GC_PACK_GRACE = "TREADLE_GC_PACK_GRACE_SECONDS"
# The AWS backend (`treadle dev --backend aws` and the platform Lambdas). The names the
# CDK stack sets (infra/names.py) are these; tests/entrypoints checks that they agree.
ENV_BACKEND = "TREADLE_BACKEND"
ENV_STAGE = "TREADLE_STAGE"
ENV_TABLE = "TREADLE_TABLE"
ENV_BUCKET = "TREADLE_BUCKET"
ENV_QUEUE_URL = "TREADLE_QUEUE_URL"
ENV_TENANT_ROLE_ARN = "TREADLE_TENANT_ROLE_ARN"
ENV_TOKEN_SECRET_ARN = "TREADLE_TOKEN_SECRET_ARN"
ENV_ADMIN_SECRET_ARN = "TREADLE_ADMIN_SECRET_ARN"
ENV_TENANT_LAYER_ARN = "TREADLE_TENANT_LAYER_ARN"
ENV_API_URL = "TREADLE_API_URL"
ENV_FUNCTION_RUNTIME = "TREADLE_FUNCTION_RUNTIME"
ENV_SWEEP_INTERVAL = "TREADLE_SWEEP_INTERVAL_SECONDS"
ENV_LOG_STORE = "TREADLE_LOG_STORE"
ENV_INSECURE_MULTI_TENANT = "TREADLE_INSECURE_MULTI_TENANT"
ENV_SANDBOX_SUBNET = "TREADLE_SANDBOX_SUBNET"
# Facets on EFS (docs/facets.md). The mount path is also what tenant Lambdas are given,
# under the same name, to find their facets.
ENV_FACETS_FILE_SYSTEM_ID = "TREADLE_FACETS_FILE_SYSTEM_ID"
ENV_FACETS_MOUNT_PATH = "TREADLE_FACETS_MOUNT_PATH"
ENV_TENANT_SUBNET_IDS = "TREADLE_TENANT_SUBNET_IDS"
ENV_TENANT_SECURITY_GROUP_IDS = "TREADLE_TENANT_SECURITY_GROUP_IDS"
# Status-change notifications (docs/notifications.md).
ENV_EVENT_BUS = "TREADLE_EVENT_BUS"
ENV_EVENT_SOURCE = "TREADLE_EVENT_SOURCE"
ENV_WEBHOOK_ALLOW_PRIVATE = "TREADLE_WEBHOOK_ALLOW_PRIVATE"
# Observability (docs/observability.md).
ENV_LOG_LEVEL = "TREADLE_LOG_LEVEL"
ENV_LOG_FORMAT = "TREADLE_LOG_FORMAT"
ENV_METRICS_TOKEN = "TREADLE_METRICS_TOKEN"
ENV_METRICS_NAMESPACE = "TREADLE_METRICS_NAMESPACE"
ENV_OTEL_EXPORTER = "TREADLE_OTEL_EXPORTER"
# Tests only: crash at a durability boundary, or count them (treadle/failpoints.py).
# Not a setting: it is read once at import, never through `Settings`.
ENV_FAILPOINT = "TREADLE_FAILPOINT"
# Set by `treadle dev --processes N` for the processes it starts besides itself, never
# by users: which one it is, the port it shares and the data directory lock it holds.
ENV_PROCESS_INDEX = "TREADLE_PROCESS_INDEX"
ENV_LISTEN_PORT = "TREADLE_LISTEN_PORT"
ENV_LOCK_FD = "TREADLE_LOCK_FD"
ENV_READY_FD = "TREADLE_READY_FD"
# Also set for them: the cores the first process could use before it pinned itself.
ENV_CPUS = "TREADLE_CPUS"
# boto3's own name: one endpoint for every service (moto server, LocalStack).
ENV_AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"

Backend = Literal["embedded", "aws"]

# Setting -> its environment variable (for reading them, and for naming them in errors).
ENV_VARS: tuple[tuple[str, str], ...] = (
    ("data_dir", ENV_DATA_DIR),
    ("host", ENV_HOST),
    ("port", ENV_PORT),
    ("region", ENV_REGION),
    ("default_account", ENV_ACCOUNT),
    ("wait_time_scale", ENV_WAIT_TIME_SCALE),
    ("sandbox_warm_per_function", ENV_SANDBOX_WARM),
    ("sandbox_init_ahead", ENV_SANDBOX_INIT_AHEAD),
    ("sandbox_idle_s", ENV_SANDBOX_IDLE),
    ("invoke_concurrency", ENV_INVOKE_CONCURRENCY),
    ("processes", ENV_PROCESSES),
    ("pin_cores", ENV_PIN_CORES),
    ("durable_channel", ENV_DURABLE_CHANNEL),
    ("admin_access_key_id", ENV_ADMIN_KEY_ID),
    ("admin_secret_access_key", ENV_ADMIN_SECRET),
    ("max_clock_skew_s", ENV_MAX_CLOCK_SKEW),
    ("sync_invoke_wait_s", ENV_SYNC_INVOKE_WAIT),
    ("audit_retention_days", ENV_AUDIT_RETENTION),
    ("gc_interval_s", ENV_GC_INTERVAL),
    ("gc_pack_grace_s", ENV_GC_PACK_GRACE),
    ("backend", ENV_BACKEND),
    ("stage", ENV_STAGE),
    ("table", ENV_TABLE),
    ("bucket", ENV_BUCKET),
    ("queue_url", ENV_QUEUE_URL),
    ("tenant_role_arn", ENV_TENANT_ROLE_ARN),
    ("token_secret_arn", ENV_TOKEN_SECRET_ARN),
    ("admin_secret_arn", ENV_ADMIN_SECRET_ARN),
    ("tenant_layer_arn", ENV_TENANT_LAYER_ARN),
    ("api_url", ENV_API_URL),
    ("aws_endpoint_url", ENV_AWS_ENDPOINT_URL),
    ("function_runtime", ENV_FUNCTION_RUNTIME),
    ("sweep_interval_s", ENV_SWEEP_INTERVAL),
    ("log_store", ENV_LOG_STORE),
    ("insecure_multi_tenant", ENV_INSECURE_MULTI_TENANT),
    ("sandbox_subnet", ENV_SANDBOX_SUBNET),
    ("facets_file_system_id", ENV_FACETS_FILE_SYSTEM_ID),
    ("facets_mount_path", ENV_FACETS_MOUNT_PATH),
    ("tenant_subnet_ids", ENV_TENANT_SUBNET_IDS),
    ("tenant_security_group_ids", ENV_TENANT_SECURITY_GROUP_IDS),
    ("event_bus", ENV_EVENT_BUS),
    ("event_source", ENV_EVENT_SOURCE),
    ("webhook_allow_private", ENV_WEBHOOK_ALLOW_PRIVATE),
    ("log_level", ENV_LOG_LEVEL),
    ("log_format", ENV_LOG_FORMAT),
    ("metrics_token", ENV_METRICS_TOKEN),
    ("metrics_namespace", ENV_METRICS_NAMESPACE),
    ("otel_exporter", ENV_OTEL_EXPORTER),
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    port: int = Field(default=9000, ge=0, le=65535)
    region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    default_account: str = Field(default="123456789012", pattern=r"^\d{12}$")
    wait_time_scale: float = Field(default=1.0, gt=0.0, le=1.0)
    # Warm workers kept per function version: as many as invocations commonly run at
    # once, or each extra invocation costs a fork (forked workers share most pages).
    sandbox_warm_per_function: int = Field(default=16, ge=1, le=256)
    # A new version's first worker imports its handler as the code is published, from
    # its tenant's spare (`LocalSandbox.prepare`), not at its first invoke.
    sandbox_init_ahead: bool = True
    # A version's idle workers beyond its most recently used one stop after this long
    # (each holds tens of MiB); the last one stays warm until evicted.
    sandbox_idle_s: float = Field(default=60.0, gt=0)
    # Durable invocations running at once (each holds a sandbox worker); more wait in
    # the scheduler's queue. Past the warm count, each extra one would fork a worker.
    invoke_concurrency: int = Field(default=16, ge=1, le=1024)
    # Server processes sharing the data directory (embedded backend): each serves the
    # API and drives its share of the executions (`domain/partition`), so the platform
    # is not bound to one interpreter's lock. 1: the single process of old.
    processes: int = Field(default=1, ge=1, le=64)
    # Each server process keeps its threads on one core, its sandbox workers on all
    # (`treadle/affinity.py`: the GIL's hand-offs are far cheaper on one core).
    pin_cores: bool = True
    max_request_bytes: int = 6 * 1024 * 1024
    # Sandbox workers send the SDK's checkpoints over their own channel instead of HTTP.
    durable_channel: bool = True
    # The platform admin credential (for /v1/tenants). Unset: one is generated per data
    # directory and written to DATA_DIR/credentials as profile `treadle-admin`.
    admin_access_key_id: str | None = Field(default=None, pattern=r"^[A-Z0-9]{16,128}$")
    admin_secret_access_key: SecretStr | None = None
    # How far a signed request's date may be from ours (AWS allows 5 minutes).
    max_clock_skew_s: int = Field(default=300, ge=1, le=3600)
    # The longest a synchronous Invoke of a durable function waits for the execution to
    # close; past it the caller gets the function error Treadle.SyncInvokeTimeout (the
    # execution runs on). Below boto3's and the AWS CLI's 60 s read timeout by default:
    # a client that timed out would retry, and a retry without DurableExecutionName
    # starts a second execution. Behind API Gateway (29 s integration timeout) the stack
    # sets 25. Up to Lambda's 900 s for clients configured to wait that long.
    sync_invoke_wait_s: int = Field(default=50, ge=1, le=900)
    # How long audit records are kept (docs/operating.md): the embedded scheduler purges
    # older ones, DynamoDB's TTL removes them on AWS, and reads never show them.
    audit_retention_days: int = Field(default=90, ge=1, le=3650)
    # How often garbage collection runs each tenant's policy (docs/operating.md): the
    # embedded server's loop; on AWS, the sweep runs it when a run falls on a multiple.
    gc_interval_s: int = Field(default=3600, ge=60, le=7 * 86_400)
    # A Git pack younger than this is never removed by GC: a push stores its pack before
    # its refs move, and must not lose it meanwhile (longer than any push takes).
    gc_pack_grace_s: int = Field(default=3600, ge=0, le=30 * 86_400)
    # Where the host cannot isolate tenants' code (not root, no namespaces) the platform
    # keeps to one tenant; True serves several anyway, knowingly.
    insecure_multi_tenant: bool = False
    # Where tenants' links to the host are numbered when their egress policy lets them
    # out (a /30 each): the benchmarking range by default, unused on real networks.
    sandbox_subnet: IPv4Network = IPv4Network("198.18.0.0/16")

    # -- AWS backend ---------------------------------------------------------------------
    backend: Backend = "embedded"
    # Names the tenant Lambdas (`treadle-<stage>-...`) and, unless given, the resources.
    stage: str = Field(default="dev", pattern=r"^[a-z][a-z0-9]{0,11}$")
    table: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9_.-]{3,255}$")
    bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    queue_url: str | None = None
    # The role tenant Lambdas run with; unset in emulated mode: one is created.
    tenant_role_arn: str | None = None
    # Secrets Manager secret holding the checkpoint-token key; unset: DATA_DIR/secrets.
    token_secret_arn: str | None = None
    # Secrets Manager secret holding the admin key pair (JSON, see
    # `adapters/aws/resources.read_admin_key`); the stack generates it. Unset: the admin
    # key is configured (above) or derived.
    admin_secret_arn: str | None = None
    # The platform's tenant layer (durable SDK + credential wrapper) that tenant Lambdas
    # get; unset: they get no layer (emulated mode runs their code in the local sandbox).
    tenant_layer_arn: str | None = None
    # Where tenant code reaches the durable API (the API Gateway URL on AWS).
    api_url: str | None = None
    # Unset: AWS itself. Set (moto server, LocalStack): emulated mode, which creates
    # missing resources at start-up and runs tenant code in the local sandbox.
    aws_endpoint_url: str | None = None
    # "sandbox": tenant code runs locally while Lambda's control plane is still used
    # (moto has no Docker to run code); unset: the sandbox when emulated, else Lambda.
    function_runtime: Literal["lambda", "sandbox"] | None = None
    # The sweep's period; must equal how often it really runs (infra: every minute).
    sweep_interval_s: int = Field(default=60, ge=1, le=900)
    # Where the AWS backend keeps and reads function logs: "cloudwatch" (the groups
    # Lambda writes), or "local" (DATA_DIR/logs.db, for an emulator without CloudWatch
    # Logs). Unset: cloudwatch. The embedded backend always keeps them locally.
    log_store: Literal["cloudwatch", "local"] | None = None
    # Facets on EFS: the file system, where this process has its `/facets` mounted, and
    # the VPC tenant Lambdas mount it from (comma-separated ids). Unset: facets are
    # local files beside the local sandbox.
    facets_file_system_id: str | None = Field(default=None, pattern=r"^fs-[0-9a-f]{8,40}$")
    facets_mount_path: str = Field(default="/mnt/facets", pattern=r"^/mnt/[a-zA-Z0-9_.-]+$")
    tenant_subnet_ids: tuple[str, ...] = ()
    tenant_security_group_ids: tuple[str, ...] = ()

    # -- status-change notifications (docs/notifications.md) ----------------------------
    # The EventBridge bus (name or ARN) every status change is put on (AWS backend);
    # unset: none (the stream and webhooks still work).
    event_bus: str | None = Field(default=None, pattern=r"^[A-Za-z0-9/:._-]{1,1600}$")
    # The events' `source` on every channel (AWS's own is "aws.lambda").
    event_source: str = Field(default="treadle", pattern=r"^[A-Za-z0-9._-]{1,256}$")
    # Whether webhooks may call loopback and private addresses (never link-local or
    # metadata ones: docs/security.md). Unset: yes embedded (one's own machine), no on AWS.
    webhook_allow_private: bool | None = None

    # -- observability (docs/observability.md) -------------------------------------------
    # The level of the server's own lines (a status change is INFO, an invocation error
    # WARNING) and their shape: "text" for a terminal, "json" (one object a line) for
    # a log shipper.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # A bearer token that may read every tenant's series at /metrics (a Prometheus
    # scraper cannot sign SigV4); unset: only SigV4/Basic-signed reads (the admin: all
    # tenants; a tenant: its own).
    metrics_token: SecretStr | None = Field(default=None, min_length=16)
    # The CloudWatch namespace of the EMF metrics on AWS.
    metrics_namespace: str = Field(default="Treadle", pattern=r"^[A-Za-z0-9/#:._ -]{1,255}$")
    # Where OpenTelemetry spans go: nowhere (no cost), the console, or OTLP over HTTP
    # (the exporter's standard OTEL_EXPORTER_OTLP_* variables say where).
    otel_exporter: Literal["none", "console", "otlp"] = "none"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("tenant_subnet_ids", "tenant_security_group_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _facets_vpc(self) -> Settings:
        # A Lambda mounts EFS only from a VPC: without one, tenant functions would fail
        # to deploy long after start-up.
        if self.facets_file_system_id and not (
            self.tenant_subnet_ids and self.tenant_security_group_ids
        ):
            raise ValueError(
                f"{ENV_FACETS_FILE_SYSTEM_ID} needs {ENV_TENANT_SUBNET_IDS} and "
                f"{ENV_TENANT_SECURITY_GROUP_IDS} (tenant Lambdas mount EFS from a VPC)"
            )
        return self

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _processes_embedded(self) -> Settings:
        # The AWS backend's scale-out is Lambda's and SQS's own: its timers are messages
        # any consumer may take, not rows partitioned between processes.
        if self.processes > 1 and self.backend != "embedded":
            raise ValueError(f"{ENV_PROCESSES} above 1 is for the embedded backend only")
        return self

    @model_validator(mode="after")
    def _admin_pair(self) -> Settings:
        if (self.admin_access_key_id is None) != (self.admin_secret_access_key is None):
            raise ValueError(f"set both {ENV_ADMIN_KEY_ID} and {ENV_ADMIN_SECRET}, or neither")
        return self

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {}
        for key, name in ENV_VARS:
            if name in env:
                values[key] = env[name]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    @staticmethod
    def describe_error(exc: ValidationError) -> str:
        """What is wrong, by setting and the environment variable that sets it."""
        names = dict(ENV_VARS)
        parts = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            where = f"{field} ({names[field]})" if field in names else field
            parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
        return "; ".join(parts)

    @property
    def emulated(self) -> bool:
        return self.aws_endpoint_url is not None

    @property
    def table_name(self) -> str:
        return self.table or f"treadle-{self.stage}"

    @property
    def bucket_name(self) -> str:
        # Bucket names are global on AWS: an unset name is for emulators only.
        return self.bucket or f"treadle-{self.stage}-{self.default_account}"

    @property
    def webhooks_may_call_private(self) -> bool:
        if self.webhook_allow_private is not None:
            return self.webhook_allow_private
        return self.backend == "embedded"

    @property
    def local_sandbox(self) -> bool:
        if self.function_runtime is not None:
            return self.function_runtime == "sandbox"
        return self.emulated

    def token_secret(self) -> bytes:
        """The HMAC key of checkpoint tokens: made once per data dir, never logged."""
        return self._secret_file("token.key", lambda: secrets.token_bytes(32))

    def _secret_file(self, name: str, make: Callable[[], bytes]) -> bytes:
        path = self.data_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomically(path, make())
        return path.read_bytes()

    def admin_key(self) -> tuple[str, str]:
        """(access key id, secret) of the platform admin: from the settings or generated."""
        if self.admin_access_key_id and self.admin_secret_access_key:
            return self.admin_access_key_id, self.admin_secret_access_key.get_secret_value()
        raw = self._secret_file(
            "admin.key", lambda: f"{new_access_key_id()}:{new_secret()}".encode()
        )
        key_id, _, secret = raw.decode().partition(":")
        return key_id, secret
