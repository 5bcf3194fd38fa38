"""Function management use cases (the Lambda function API, tenant-scoped)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from treadle.adapters.local.code import LocalCodeStore
from treadle.domain.errors import InvalidParameter
from treadle.domain.models import DurableConfig
from treadle.domain.ports import Clock, FunctionStore, FunctionVersion, Ids

SUPPORTED_RUNTIMES = frozenset({"python3.11", "python3.12", "python3.13", "python3.14"})
_NAME = r"^[a-zA-Z0-9\-_]{1,64}$"


class FunctionCode(BaseModel):
    model_config = ConfigDict(extra="ignore")
    ZipFile: str | None = None  # base64, as boto3 sends a blob in JSON


class Environment(BaseModel):
    model_config = ConfigDict(extra="ignore")
    Variables: dict[str, str] = Field(default_factory=dict)


_Environment = Environment
_DurableConfig = DurableConfig


class CreateFunctionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    FunctionName: str = Field(pattern=_NAME)
    Runtime: str = "python3.11"
    Role: str = ""
    Handler: str = Field(min_length=1, max_length=128, pattern=r"^[^\s]+$")
    Code: FunctionCode
    Description: str = Field(default="", max_length=256)
    Timeout: int = Field(default=3, ge=1, le=900)
    MemorySize: int = Field(default=128, ge=128, le=10240)
    Publish: bool = False
    Environment: _Environment | None = None
    DurableConfig: _DurableConfig | None = None


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
        self, *, store: FunctionStore, code: LocalCodeStore, clock: Clock, ids: Ids, region: str
    ) -> None:
        self.store = store
        self.code = code
        self.clock = clock
        self.ids = ids
        self.region = region

    def function_arn(self, tenant: str, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{tenant}:function:{name}"

    def _with_code(self, zip_bytes: bytes) -> dict[str, Any]:
        key = self.code.put(zip_bytes)
        return {
            "code_key": key,
            "code_sha256": base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode(),
            "code_size": len(zip_bytes),
        }

    def create(self, tenant: str, req: CreateFunctionRequest) -> FunctionVersion:
        if req.Runtime not in SUPPORTED_RUNTIMES:
            raise InvalidParameter(
                f"Runtime {req.Runtime} is not supported; use one of {sorted(SUPPORTED_RUNTIMES)}."
            )
        fn = FunctionVersion(
            tenant=tenant,
            function_name=req.FunctionName,
            version="$LATEST",
            function_arn=self.function_arn(tenant, req.FunctionName),
            runtime=req.Runtime,
            role=req.Role,
            handler=req.Handler,
            description=req.Description,
            timeout_s=req.Timeout,
            memory_mb=req.MemorySize,
            environment=req.Environment.Variables if req.Environment else {},
            durable_config=req.DurableConfig,
            last_modified_ms=self.clock.now_ms(),
            revision_id=self.ids.revision_id(),
            **self._with_code(_decode_zip(req.Code.ZipFile)),
        )
        self.store.put_latest(fn, create=True)
        if req.Publish:
            self.store.publish(tenant, fn.function_name, None)
        return fn

    def update_code(self, tenant: str, name: str, req: UpdateCodeRequest) -> FunctionVersion:
        current = self.store.get(tenant, name)
        fn = current.model_copy(
            update={
                **self._with_code(_decode_zip(req.ZipFile)),
                "last_modified_ms": self.clock.now_ms(),
                "revision_id": self.ids.revision_id(),
            }
        )
        self.store.put_latest(fn, create=False)
        if req.Publish:
            return self.store.publish(tenant, name, None)
        return fn

    def publish(self, tenant: str, name: str, description: str | None) -> FunctionVersion:
        return self.store.publish(tenant, name, description)

    def get(self, tenant: str, name: str, qualifier: str | None) -> FunctionVersion:
        return self.store.get(tenant, name, qualifier or "$LATEST")

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
        self.store.delete(tenant, name, qualifier)
