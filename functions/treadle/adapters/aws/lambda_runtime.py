"""FunctionRuntime on AWS Lambda: one real Lambda per tenant function, one Lambda version
per (code, configuration), invoked synchronously with boto3.

Names. A tenant function is the Lambda `treadle-<stage>-<tenant>-<function>` (what the
deployer IAM policy allows: `treadle-<stage>-*`). Stage (`[a-z][a-z0-9]{0,11}`) and tenant
(12 digits) hold no hyphen, so the prefix is unambiguous and two tenants never share a
name. A name over Lambda's 64 characters keeps the prefix, the head of the function
name and `-` + 10 hex digits of SHA-256("<tenant>/<function>"): deterministic, and a
collision needs 40 bits of luck inside one tenant's own functions.

Versions. What a Treadle version needs from Lambda is code plus configuration (handler,
runtime, memory, timeout, role, environment): their digest names a Lambda *alias*
(`t-<40 hex>`) pointing at the Lambda version published for them. Deploying looks the
alias up first, so the same code and configuration is never uploaded or published twice,
by this process (a cache) or any other (the alias), and an old Treadle version keeps its
Lambda version whatever $LATEST holds now. Otherwise: create the function (retrying
while a new role has not propagated to Lambda), or update its code only if the
CodeSha256 differs and its configuration only if it differs, wait until it is Active
and its last update Successful, publish (guarded by CodeSha256, so a concurrent deploy
of other code is noticed and the deploy retried) and create the alias.

Tenant Lambdas are plain functions, not Lambda durable functions: Treadle is the durable
service for them (their `AWS_ENDPOINT_URL_LAMBDA` is Treadle's API), and invokes them
with the envelope as the event. They sign their checkpoints with their tenant's sandbox
key, passed in their environment and put in place by the wrapper of the platform's
tenant layer, which also carries the durable SDK (`tenant_credentials`). Layers and that
environment are part of the configuration compared and hashed above.

Emulated mode: moto cannot run code without Docker, so an `invoker` (the local sandbox)
may replace `lambda:Invoke`; every control-plane call still goes to (moto's) Lambda.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

from botocore.exceptions import BotoCoreError, ClientError

from treadle.adapters.aws.errors import error_code
from treadle.adapters.aws.lambda_calls import (
    ENDPOINT_ENV,
    POLL_S,
    RESERVED_ENV,
    ROLE_RETRY_DELAYS_S,
    STAGE_RE,
    WAIT_TIMEOUT_S,
    DeployFailed,
    SystemClock,
    changed_meanwhile,
    function_error,
    physical_name,
    revision,
    role_not_ready,
    translate,
    translated,
)
from treadle.adapters.aws.lambda_mounts import MountOf, no_mount
from treadle.adapters.aws.tenant_credentials import PLATFORM_OWNED_ENV, credential_environment
from treadle.domain.errors import ConcurrentModification, Unavailable
from treadle.domain.ports import Clock, FunctionVersion, InvocationOutcome

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_lambda.literals import RuntimeType
    from mypy_boto3_lambda.type_defs import FunctionConfigurationResponseTypeDef

log = logging.getLogger(__name__)

T = TypeVar("T")

_DEPLOY_ATTEMPTS: Final = 4


class ZipSource(Protocol):
    """Where code packages are, by key (hex SHA-256): the CodeStore port fits."""

    def get(self, key: str) -> bytes: ...


Invoker = Callable[[FunctionVersion, bytes, str], InvocationOutcome]
# The (access key id, secret) a tenant's functions sign with: `SandboxKeys.for_tenant`.
SandboxCredentials = Callable[[str], tuple[str, str]]


@dataclass(frozen=True)
class Deployment:
    name: str  # the Lambda function
    version: str  # the Lambda version number invoked
    alias: str  # names this code + configuration


class LambdaRuntime:
    def __init__(
        self,
        client: LambdaClient,
        *,
        stage: str,
        role_arn: str,
        code: ZipSource,
        api_url: str,
        invoker: Invoker | None = None,
        sandbox_credentials: SandboxCredentials | None = None,
        layers: Sequence[str] = (),
        mounts: MountOf = no_mount,
        sleep: Callable[[float], None] = time.sleep,
        clock: Clock | None = None,
        role_retry_delays_s: tuple[float, ...] = ROLE_RETRY_DELAYS_S,
        wait_timeout_s: float = WAIT_TIMEOUT_S,
        poll_s: float = POLL_S,
    ) -> None:
        if not STAGE_RE.fullmatch(stage):
            raise ValueError(f"invalid stage {stage!r}")
        self._client = client
        self._stage = stage
        self._role_arn = role_arn
        self._code = code
        self._api_url = api_url
        self._invoker = invoker
        self._credentials = sandbox_credentials
        # The platform's tenant layer (durable SDK + credential wrapper), by version ARN.
        self._layers = list(layers)
        # The tenant's facets on EFS (`lambda_mounts`), None: nothing mounted.
        self._mounts = mounts
        self._sleep = sleep
        self._clock = clock or SystemClock()
        self._role_delays = role_retry_delays_s
        self._wait_polls = max(1, int(wait_timeout_s / poll_s))
        self._poll_s = poll_s
        self._deployed: dict[tuple[str, str], Deployment] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- naming and identity ------------------------------------------------------------

    def name_of(self, fn: FunctionVersion) -> str:
        return physical_name(self._stage, fn.tenant, fn.function_name)

    def environment(self, fn: FunctionVersion) -> dict[str, str]:
        """What the Lambda gets: the tenant's variables, then the platform's on top.

        It holds the sandbox secret: only Lambda's control plane (which tenants cannot
        reach) sees it; Treadle's GetFunction answers from the function store.
        """
        env = {
            k: v
            for k, v in fn.environment.items()
            if k not in RESERVED_ENV and k not in PLATFORM_OWNED_ENV
        }
        env[ENDPOINT_ENV] = self._api_url  # the durable SDK checkpoints to Treadle
        if self._credentials is not None:
            key_id, secret = self._credentials(fn.tenant)
            env.update(credential_environment(key_id, secret, wrapper=bool(self._layers)))
        mount = self._mounts(fn.tenant)
        if mount is not None:
            env[mount.env_name] = mount.mount_path
        return env

    def _mount_config(self, fn: FunctionVersion) -> dict[str, Any]:
        mount = self._mounts(fn.tenant)
        return {} if mount is None else mount.configuration()

    def _alias(self, fn: FunctionVersion) -> str:
        identity = {
            "code": fn.code_sha256,
            "handler": fn.handler,
            "runtime": fn.runtime,
            "memory": fn.memory_mb,
            "timeout": fn.timeout_s,
            "role": self._role_arn,
            "environment": self.environment(fn),
            "layers": self._layers,
            **self._mount_config(fn),
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return f"t-{digest[:40]}"

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    # -- deploy -------------------------------------------------------------------------

    def deploy(self, fn: FunctionVersion) -> Deployment:
        """The Lambda version running `fn`, created or updated and published if needed."""
        name, alias = self.name_of(fn), self._alias(fn)
        known = self._deployed.get((name, alias))
        if known is not None:
            return known
        with self._lock(name), translated(f"deploy {fn.qualified_arn} as {name}"):
            known = self._deployed.get((name, alias)) or self._existing(name, alias)
            if known is None:
                known = self._deploy(name, alias, fn)
            self._deployed[(name, alias)] = known
            return known

    def forget(self, fn: FunctionVersion) -> None:
        """Drop what is cached about `fn` (its Lambda was deleted behind our back)."""
        self._deployed.pop((self.name_of(fn), self._alias(fn)), None)

    def _existing(self, name: str, alias: str) -> Deployment | None:
        try:
            found = self._client.get_alias(FunctionName=name, Name=alias)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return Deployment(name, found["FunctionVersion"], alias)

    def _deploy(self, name: str, alias: str, fn: FunctionVersion) -> Deployment:
        for _ in range(_DEPLOY_ATTEMPTS):
            try:
                version = self._deploy_once(name, fn)
            except ClientError as exc:
                if not changed_meanwhile(exc):
                    raise
                # Another deployer changed $LATEST between our read and our write.
                log.info("%s changed while deploying %s; again", name, fn.qualified_arn)
                continue
            if version is not None:
                return self._name_version(name, alias, version)
        raise ConcurrentModification(f"{name} kept changing while {fn.qualified_arn} deployed.")

    def _deploy_once(self, name: str, fn: FunctionVersion) -> str | None:
        """Make $LATEST hold `fn`'s code and configuration, publish it; its version."""
        config = self._configuration(name)
        if config is None and self._create(name, fn) is None:
            return None  # created meanwhile by another deployer: update it instead
        config = self._wait_ready(name)
        if config.get("CodeSha256") != fn.code_sha256:
            self._client.update_function_code(
                FunctionName=name, ZipFile=self._code.get(fn.code_key), **revision(config)
            )
            config = self._wait_ready(name)
        if self._differs(config, fn):
            current = config
            self._with_role_retry(lambda: self._update_configuration(name, fn, current))
            config = self._wait_ready(name)
        published = self._client.publish_version(
            FunctionName=name,
            # Publishes only if $LATEST still has this code: a concurrent deploy of
            # other code fails this call instead of being published under our alias.
            CodeSha256=fn.code_sha256,
            Description=f"{fn.tenant}/{fn.function_name}:{fn.version} {fn.code_key[:12]}",
            **revision(config),
        )
        return published["Version"]

    def _name_version(self, name: str, alias: str, version: str) -> Deployment:
        try:
            self._client.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)
        except ClientError as exc:
            if error_code(exc) != "ResourceConflictException":
                raise
            # Another deployer named the same code and configuration first: use its version.
            found = self._existing(name, alias)
            if found is not None:
                return found
        return Deployment(name, version, alias)

    def _configuration(self, name: str) -> FunctionConfigurationResponseTypeDef | None:
        try:
            return self._client.get_function_configuration(FunctionName=name)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise

    def _create(
        self, name: str, fn: FunctionVersion
    ) -> FunctionConfigurationResponseTypeDef | None:
        zip_bytes = self._code.get(fn.code_key)
        try:
            return self._with_role_retry(
                lambda: self._client.create_function(
                    FunctionName=name,
                    Runtime=cast("RuntimeType", fn.runtime),
                    Role=self._role_arn,
                    Handler=fn.handler,
                    Code={"ZipFile": zip_bytes},
                    Description=f"Treadle {self._stage}: {fn.tenant}/{fn.function_name}",
                    Timeout=fn.timeout_s,
                    MemorySize=fn.memory_mb,
                    EphemeralStorage={"Size": fn.ephemeral_storage_mb},
                    Environment={"Variables": self.environment(fn)},
                    Layers=self._layers,
                    PackageType="Zip",
                    Publish=False,
                    **self._mount_config(fn),
                )
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceConflictException":
                return None
            raise

    def _differs(self, config: FunctionConfigurationResponseTypeDef, fn: FunctionVersion) -> bool:
        deployed_env = dict(config.get("Environment", {}).get("Variables", {}))
        deployed_layers = [layer.get("Arn") for layer in config.get("Layers", [])]
        mount = self._mounts(fn.tenant)
        return (
            (mount is not None and mount.differs(cast("dict[str, Any]", config)))
            or config.get("Handler") != fn.handler
            or config.get("Runtime") != fn.runtime
            or config.get("MemorySize") != fn.memory_mb
            or config.get("EphemeralStorage", {}).get("Size", 512) != fn.ephemeral_storage_mb
            or config.get("Timeout") != fn.timeout_s
            or config.get("Role") != self._role_arn
            or deployed_env != self.environment(fn)
            or deployed_layers != self._layers
        )

    def _update_configuration(
        self, name: str, fn: FunctionVersion, config: FunctionConfigurationResponseTypeDef
    ) -> None:
        self._client.update_function_configuration(
            FunctionName=name,
            Runtime=cast("RuntimeType", fn.runtime),
            Role=self._role_arn,
            Handler=fn.handler,
            Timeout=fn.timeout_s,
            MemorySize=fn.memory_mb,
            EphemeralStorage={"Size": fn.ephemeral_storage_mb},
            Environment={"Variables": self.environment(fn)},
            Layers=self._layers,
            **self._mount_config(fn),
            **revision(config),
        )

    def _with_role_retry(self, call: Callable[[], T]) -> T:
        for delay in self._role_delays:
            try:
                return call()
            except ClientError as exc:
                if not role_not_ready(exc):
                    raise
                log.info(
                    "role %s not yet assumable by Lambda; retrying in %ss", self._role_arn, delay
                )
                self._sleep(delay)
        return call()

    def _wait_ready(self, name: str) -> FunctionConfigurationResponseTypeDef:
        """Poll until State is Active (or Inactive) and LastUpdateStatus is Successful."""
        for _ in range(self._wait_polls):
            config = self._client.get_function_configuration(FunctionName=name)
            state = config.get("State", "Active")
            update = config.get("LastUpdateStatus", "Successful")
            if state == "Failed" or update == "Failed":
                reason = config.get("StateReason") or config.get("LastUpdateStatusReason", "")
                raise DeployFailed(f"{name} failed: {reason}")
            # Inactive (idle for weeks) accepts updates and wakes up on invoke.
            if state in ("Active", "Inactive") and update == "Successful":
                return config
            self._sleep(self._poll_s)
        raise Unavailable(f"{name} did not become ready in {self._wait_polls * self._poll_s}s.")

    # -- invoke -------------------------------------------------------------------------

    def prepare(self, fn: FunctionVersion) -> None:
        # The Lambda is created (or reused by code hash) on first invoke: creating it here
        # would hold CreateFunction for the seconds Lambda takes to become Active.
        return None

    def invoke(self, fn: FunctionVersion, payload: bytes, request_id: str) -> InvocationOutcome:
        deployment = self.deploy(fn)
        if self._invoker is not None:
            return self._invoker(fn, payload, request_id)
        for attempt in (1, 2):
            started = self._clock.now_ms()
            try:
                response = self._client.invoke(
                    FunctionName=deployment.name,
                    Qualifier=deployment.version,
                    InvocationType="RequestResponse",
                    Payload=payload,
                )
                body = response["Payload"].read()
            except ClientError as exc:
                code = error_code(exc)
                if attempt == 1 and code == "ResourceNotFoundException":
                    log.warning("%s vanished; deploying it again", deployment.name)
                    self.forget(fn)
                    deployment = self.deploy(fn)
                    continue
                if attempt == 1 and code == "ResourceNotReadyException":
                    with translated(f"wake {deployment.name}"):
                        self._wait_ready(deployment.name)
                    continue
                raise translate(exc, f"invoke {deployment.name}:{deployment.version}") from exc
            except BotoCoreError as exc:
                raise Unavailable(f"invoke {deployment.name}: Lambda unreachable ({exc}).") from exc
            ended = self._clock.now_ms()
            if response.get("FunctionError"):
                error = function_error(body, request_id)
                return InvocationOutcome(request_id, None, error, started, ended)
            return InvocationOutcome(request_id, body, None, started, ended)
        raise Unavailable(f"invoke {deployment.name}: not ready after a redeploy.")
