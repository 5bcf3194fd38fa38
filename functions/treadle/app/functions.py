"""Function management use cases (the Lambda function API, tenant-scoped).

Order of writes for any new code, and why it is crash safe:
1. the package goes to the content-addressed code store (an unreferenced package is
   garbage, never wrong);
2. it is committed to the tenant's `functions` repository (`code_delivery.CodeMirror`);
3. the function record ($LATEST) is written, naming that commit; a publish follows;
4. the package is put back if it went missing: the collector removes packages no version
   has referenced for its grace period, and these bytes may be one of them, removed
   between steps 1 and 3 (`domain/code_refs.py`).
The record is the truth and is written last: a crash or a failed record write after
step 2 leaves a commit no version names (the next upload commits on top of it), never
a version naming a commit or package that does not exist. A failed Git commit fails
the request before any record changes.

Writes to one function are serialized in this process (mirror, record, publish), so
the branch's order is the records' order and a deploy publishes the code it wrote. On
a multi-process deployment that lock does not span processes; the invariant that
matters still holds (each recorded commit holds exactly its version's code) and a
deploy detects a publish of someone else's code (ConcurrentModification).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from treadle.app.aliases import REVISION_MOVED, resolve
from treadle.app.code_delivery import (
    CodeMirror,
    DeployRequest,
    build_zip,
    function_dir,
    read_source,
    unpack_zip,
)
from treadle.app.quotas import Quotas
from treadle.artifacts.service import ArtifactService
from treadle.domain.audit import pending_record
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    InvalidParameter,
    NotFound,
    PreconditionFailed,
    TreadleError,
)
from treadle.domain.models import DurableConfig
from treadle.domain.ports import (
    AliasStore,
    Clock,
    CodeSource,
    CodeStore,
    FunctionStore,
    FunctionVersion,
    Ids,
)

log = logging.getLogger(__name__)

SUPPORTED_RUNTIMES = frozenset({"python3.11", "python3.12", "python3.13", "python3.14"})
_NAME = r"^[a-zA-Z0-9\-_]{1,64}$"
_LOCK_STRIPES = 64


class FunctionCode(BaseModel):
    model_config = ConfigDict(extra="ignore")
    ZipFile: str | None = None  # base64, as boto3 sends a blob in JSON


class Environment(BaseModel):
    model_config = ConfigDict(extra="ignore")
    Variables: dict[str, str] = Field(default_factory=dict)


_Environment = Environment
_DurableConfig = DurableConfig


class EphemeralStorageConfig(BaseModel):
    """Lambda's /tmp size in MB; the local sandbox mounts a tmpfs of that size."""

    model_config = ConfigDict(extra="ignore")
    Size: int = Field(ge=512, le=10240)


# CreateFunction's and UpdateFunctionConfiguration's shared constraints.
_Handler = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
_Description = Annotated[str, Field(max_length=256)]
_Timeout = Annotated[int, Field(ge=1, le=900)]
_MemorySize = Annotated[int, Field(ge=128, le=10240)]


class CreateFunctionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    FunctionName: str = Field(pattern=_NAME)
    Runtime: str = "python3.11"
    Role: str = ""
    Handler: _Handler
    Code: FunctionCode
    Description: _Description = ""
    Timeout: _Timeout = 3
    MemorySize: _MemorySize = 128
    Publish: bool = False
    Environment: _Environment | None = None
    DurableConfig: _DurableConfig | None = None
    EphemeralStorage: EphemeralStorageConfig | None = None


class UpdateConfigurationRequest(BaseModel):
    """What UpdateFunctionConfiguration may change: what CreateFunction accepts, each
    optional (absent: unchanged), validated the same way."""

    model_config = ConfigDict(extra="ignore")
    Runtime: str | None = None
    Role: str | None = None
    Handler: _Handler | None = None
    Description: _Description | None = None
    Timeout: _Timeout | None = None
    MemorySize: _MemorySize | None = None
    Environment: _Environment | None = None
    DurableConfig: _DurableConfig | None = None
    EphemeralStorage: EphemeralStorageConfig | None = None
    RevisionId: str | None = None

    def changes(self) -> dict[str, Any]:
        """The FunctionVersion fields given."""
        given: dict[str, Any] = {
            "runtime": self.Runtime,
            "role": self.Role,
            "handler": self.Handler,
            "description": self.Description,
            "timeout_s": self.Timeout,
            "memory_mb": self.MemorySize,
            "environment": None if self.Environment is None else self.Environment.Variables,
            "durable_config": self.DurableConfig,
            "ephemeral_storage_mb": None
            if self.EphemeralStorage is None
            else self.EphemeralStorage.Size,
        }
        return {k: v for k, v in given.items() if v is not None}


class UpdateCodeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    ZipFile: str | None = None
    Publish: bool = False


def _decode_zip(b64: str | None) -> bytes:
    if not b64:
        raise InvalidParameter("Code.ZipFile is required (S3 code locations are not supported).")
    try:
        return base64.b64decode(b64, validate=True)
    except ValueError:
        raise InvalidParameter("Code.ZipFile is not valid base64.") from None


class FunctionService:
    def __init__(
        self,
        *,
        store: FunctionStore,
        code: CodeStore,
        artifacts: ArtifactService,
        clock: Clock,
        ids: Ids,
        region: str,
        quotas: Quotas,
        prepare: Callable[[FunctionVersion], None] | None = None,
        aliases: AliasStore | None = None,
    ) -> None:
        self.aliases = aliases
        self.quotas = quotas
        self._prepare_hook = prepare
        self.store = store
        self.code = code
        self.artifacts = artifacts
        self.mirror = CodeMirror(artifacts)
        self.clock = clock
        self.ids = ids
        self.region = region
        # Striped: bounded memory whatever the number of functions; two functions
        # sharing a stripe only wait for each other.
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def function_arn(self, tenant: str, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{tenant}:function:{name}"

    def _lock(self, tenant: str, name: str) -> threading.Lock:
        return self._locks[hash((tenant, name)) % _LOCK_STRIPES]

    def _with_code(
        self,
        tenant: str,
        name: str,
        zip_bytes: bytes,
        files: dict[str, bytes],
        action: str,
        *,
        new_function: bool,
    ) -> dict[str, Any]:
        """Steps 1 and 2 of the module docstring; the fields the record gets."""
        # Before anything is stored: a refused upload leaves no trace.
        self.quotas.check_code(tenant, len(zip_bytes), new_function=new_function)
        key = self.code.put(zip_bytes)
        digest = hashlib.sha256(zip_bytes)
        commit = self.mirror.commit(
            tenant, name, files, f"{action} {name} (sha256 {digest.hexdigest()})"
        )
        return {
            "code_key": key,
            "code_sha256": base64.b64encode(digest.digest()).decode(),
            "code_size": len(zip_bytes),
            "commit_sha": commit,
        }

    def _find(self, tenant: str, name: str) -> FunctionVersion | None:
        try:
            return self.store.get(tenant, name)
        except NotFound:
            return None

    @staticmethod
    def _check_runtime(runtime: str) -> None:
        if runtime not in SUPPORTED_RUNTIMES:
            raise InvalidParameter(
                f"Runtime {runtime} is not supported; use one of {sorted(SUPPORTED_RUNTIMES)}."
            )

    def create(self, tenant: str, req: CreateFunctionRequest) -> FunctionVersion:
        self._check_runtime(req.Runtime)
        zip_bytes = _decode_zip(req.Code.ZipFile)
        files = unpack_zip(zip_bytes)
        name = req.FunctionName
        with self._lock(tenant, name):
            # Refused before anything reaches Git: a rejected create must not
            # overwrite the mirror of the existing function.
            if self._find(tenant, name) is not None:
                raise AlreadyExists(f"Function already exist: {name}")
            fn = FunctionVersion(
                tenant=tenant,
                function_name=name,
                version="$LATEST",
                function_arn=self.function_arn(tenant, name),
                runtime=req.Runtime,
                role=req.Role,
                handler=req.Handler,
                description=req.Description,
                timeout_s=req.Timeout,
                memory_mb=req.MemorySize,
                ephemeral_storage_mb=req.EphemeralStorage.Size if req.EphemeralStorage else 512,
                environment=req.Environment.Variables if req.Environment else {},
                durable_config=req.DurableConfig,
                last_modified_ms=self.clock.now_ms(),
                revision_id=self.ids.revision_id(),
                **self._with_code(
                    tenant, name, zip_bytes, files, "CreateFunction", new_function=True
                ),
            )
            self.store.put_latest(fn, create=True, audit=pending_record(resource=fn.function_arn))
            if req.Publish:
                self.store.publish(tenant, fn.function_name, None)
            self.code.restore(fn.code_key, zip_bytes)
        self._prepare(fn)
        return fn

    def _prepare(self, fn: FunctionVersion) -> None:
        """New code is readied for its first invoke; a failure only leaves it to that invoke."""
        if self._prepare_hook is None:
            return
        try:
            self._prepare_hook(fn)
        except Exception:
            log.warning(
                "could not prepare %s:%s ahead of its first invoke",
                fn.function_name,
                fn.version,
                exc_info=True,
            )

    def update_code(self, tenant: str, name: str, req: UpdateCodeRequest) -> FunctionVersion:
        zip_bytes = _decode_zip(req.ZipFile)
        files = unpack_zip(zip_bytes)
        with self._lock(tenant, name):
            current = self.store.get(tenant, name)
            fn = current.model_copy(
                update={
                    **self._with_code(
                        tenant, name, zip_bytes, files, "UpdateFunctionCode", new_function=False
                    ),
                    "source": None,  # uploaded, not deployed from a repository
                    "last_modified_ms": self.clock.now_ms(),
                    "revision_id": self.ids.revision_id(),
                }
            )
            self.store.put_latest(fn, create=False, audit=pending_record(resource=fn.function_arn))
            if req.Publish:
                fn = self.store.publish(tenant, name, None)
            self.code.restore(fn.code_key, zip_bytes)
        self._prepare(fn)
        return fn

    def update_configuration(
        self, tenant: str, name: str, req: UpdateConfigurationRequest
    ) -> FunctionVersion:
        """Change $LATEST's configuration (published versions are immutable).

        A new RevisionId makes the sandbox start fresh workers: its pool is keyed by
        revision, so none of the old configuration is reused.
        """
        if req.Runtime is not None:
            self._check_runtime(req.Runtime)
        with self._lock(tenant, name):
            current = self.store.get(tenant, name)
            if req.RevisionId is not None and req.RevisionId != current.revision_id:
                raise PreconditionFailed(REVISION_MOVED)
            fn = current.model_copy(
                update={
                    **req.changes(),
                    "last_modified_ms": self.clock.now_ms(),
                    "revision_id": self.ids.revision_id(),
                }
            )
            # Conditioned on what was read: another process's change is not lost.
            self.store.put_latest(
                fn,
                create=False,
                expected_revision=current.revision_id,
                audit=pending_record(resource=fn.function_arn),
            )
        self._prepare(fn)
        return fn

    def deploy(self, tenant: str, name: str, req: DeployRequest) -> FunctionVersion:
        """Publish a version from the tree at `req.ref`/`req.path` of a tenant repository,
        creating the function or updating its code and the configuration given.

        Deploying what $LATEST already is (same code, source and configuration) changes
        nothing, so the publish returns the version that has it, as PublishVersion does.
        """
        if not re.fullmatch(_NAME, name):
            raise InvalidParameter(f"Invalid function name {name!r}.")
        if req.runtime is not None:
            self._check_runtime(req.runtime)
        tree = read_source(self.artifacts, tenant, req.repo, req.ref, req.path)
        zip_bytes = build_zip(tree.files)
        source = CodeSource(
            repository=tree.repository, ref=tree.ref, path=tree.path, commit_sha=tree.commit_sha
        )
        action = f"Deploy from {tree.repository} {tree.ref}:{tree.path or '/'} ({tree.commit_sha})"
        config = _deploy_config(req)
        with self._lock(tenant, name):
            current = self._find(tenant, name)
            code = self._with_code(
                tenant, name, zip_bytes, tree.files, action, new_function=current is None
            )
            fresh = {
                "last_modified_ms": self.clock.now_ms(),
                "revision_id": self.ids.revision_id(),
            }
            if current is None:
                fn = FunctionVersion(
                    tenant=tenant,
                    function_name=name,
                    version="$LATEST",
                    function_arn=self.function_arn(tenant, name),
                    source=source,
                    **config,
                    **code,
                    **fresh,
                )
                self.store.put_latest(fn, create=True)
            else:
                fn = current.model_copy(update={**config, **code, "source": source})
                if fn != current:
                    fn = fn.model_copy(update=fresh)
                    self.store.put_latest(fn, create=False)
            # The deploy's record rides with its last write, the publish.
            version = self.store.publish(
                tenant, name, None, audit=pending_record(resource=self.function_arn(tenant, name))
            )
            self.code.restore(fn.code_key, zip_bytes)
        if version.revision_id != fn.revision_id:
            raise ConcurrentModification(
                f"Function {name} changed while it was deployed; version {version.version} "
                "holds the other change. Deploy again."
            )
        self._prepare(version)
        return version

    def publish(self, tenant: str, name: str, description: str | None) -> FunctionVersion:
        with self._lock(tenant, name):
            audit = pending_record(resource=self.function_arn(tenant, name))
            version = self.store.publish(tenant, name, description, audit=audit)
        self._prepare(version)  # invoked by its number or an alias: a key of its own
        return version

    def get(self, tenant: str, name: str, qualifier: str | None) -> FunctionVersion:
        return resolve(self.store, self.aliases, tenant, name, qualifier)

    def list_functions(
        self, tenant: str, marker: str | None, limit: int
    ) -> tuple[list[FunctionVersion], str | None]:
        return self.store.list_latest(tenant, marker, limit)

    def versions(
        self, tenant: str, name: str, marker: str | None, limit: int
    ) -> tuple[list[FunctionVersion], str | None]:
        return self.store.list_versions(tenant, name, marker, limit)

    def delete(self, tenant: str, name: str, qualifier: str | None) -> None:
        if qualifier == "$LATEST":
            raise InvalidParameter(
                "$LATEST version cannot be deleted without deleting the function."
            )
        with self._lock(tenant, name):
            arn = self.function_arn(tenant, name) + (f":{qualifier}" if qualifier else "")
            self.store.delete(tenant, name, qualifier, audit=pending_record(resource=arn))
            if qualifier is not None:
                return
            # The mirror shows the functions that exist; history keeps the code. Best
            # effort: the function is gone whatever Git says, and a stale directory is
            # replaced wholesale if the name is reused.
            try:
                self.mirror.remove(tenant, name, f"DeleteFunction {name}")
            except TreadleError as exc:
                log.warning("%s/ of %s stays in Git: %s", function_dir(name), tenant, exc)


def _deploy_config(req: DeployRequest) -> dict[str, Any]:
    """The FunctionVersion fields a deploy sets: those given (handler always)."""
    given: dict[str, Any] = {
        "handler": req.handler,
        "runtime": req.runtime,
        "timeout_s": req.timeout,
        "memory_mb": req.memorySize,
        "environment": req.environment,
        "description": req.description,
    }
    if req.durableConfig is not None:
        given["durable_config"] = DurableConfig(
            ExecutionTimeout=req.durableConfig.executionTimeout,
            RetentionPeriodInDays=req.durableConfig.retentionPeriodInDays,
        )
    return {key: value for key, value in given.items() if value is not None}
