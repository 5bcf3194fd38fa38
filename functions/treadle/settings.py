"""Platform settings: one pydantic model, validated at start-up.

Every environment variable name is defined here and nowhere else.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from treadle.tenancy.models import new_access_key_id, new_secret

ENV_PREFIX = "TREADLE_"
ENV_DATA_DIR = "TREADLE_DATA_DIR"
ENV_HOST = "TREADLE_HOST"
ENV_PORT = "TREADLE_PORT"
ENV_REGION = "TREADLE_REGION"
ENV_ACCOUNT = "TREADLE_DEFAULT_ACCOUNT"
ENV_WAIT_TIME_SCALE = "TREADLE_WAIT_TIME_SCALE"
ENV_SANDBOX_WARM = "TREADLE_SANDBOX_WARM_PER_FUNCTION"
ENV_DURABLE_CHANNEL = "TREADLE_DURABLE_CHANNEL"
ENV_ADMIN_KEY_ID = "TREADLE_ADMIN_ACCESS_KEY_ID"
ENV_ADMIN_SECRET = "TREADLE_ADMIN_SECRET_ACCESS_KEY"
ENV_MAX_CLOCK_SKEW = "TREADLE_MAX_CLOCK_SKEW_SECONDS"


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
    max_request_bytes: int = 6 * 1024 * 1024
    # Sandbox workers send the SDK's checkpoints over their own channel instead of HTTP.
    durable_channel: bool = True
    # The platform admin credential (for /v1/tenants). Unset: one is generated per data
    # directory and written to DATA_DIR/credentials as profile `treadle-admin`.
    admin_access_key_id: str | None = Field(default=None, pattern=r"^[A-Z0-9]{16,128}$")
    admin_secret_access_key: SecretStr | None = None
    # How far a signed request's date may be from ours (AWS allows 5 minutes).
    max_clock_skew_s: int = Field(default=300, ge=1, le=3600)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _admin_pair(self) -> Settings:
        if (self.admin_access_key_id is None) != (self.admin_secret_access_key is None):
            raise ValueError(f"set both {ENV_ADMIN_KEY_ID} and {ENV_ADMIN_SECRET}, or neither")
        return self

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {}
        for key, name in (
            ("data_dir", ENV_DATA_DIR),
            ("host", ENV_HOST),
            ("port", ENV_PORT),
            ("region", ENV_REGION),
            ("default_account", ENV_ACCOUNT),
            ("wait_time_scale", ENV_WAIT_TIME_SCALE),
            ("sandbox_warm_per_function", ENV_SANDBOX_WARM),
            ("durable_channel", ENV_DURABLE_CHANNEL),
            ("admin_access_key_id", ENV_ADMIN_KEY_ID),
            ("admin_secret_access_key", ENV_ADMIN_SECRET),
            ("max_clock_skew_s", ENV_MAX_CLOCK_SKEW),
        ):
            if name in env:
                values[key] = env[name]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def token_secret(self) -> bytes:
        """The HMAC key of checkpoint tokens: made once per data dir, never logged."""
        return self._secret_file("token.key", lambda: secrets.token_bytes(32))

    def _secret_file(self, name: str, make: Callable[[], bytes]) -> bytes:
        path = self.data_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(make())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
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
