"""Platform settings: one pydantic model, validated at start-up.

Every environment variable name is defined here and nowhere else.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_PREFIX = "TREADLE_"
ENV_DATA_DIR = "TREADLE_DATA_DIR"
ENV_HOST = "TREADLE_HOST"
ENV_PORT = "TREADLE_PORT"
ENV_REGION = "TREADLE_REGION"
ENV_ACCOUNT = "TREADLE_DEFAULT_ACCOUNT"
ENV_WAIT_TIME_SCALE = "TREADLE_WAIT_TIME_SCALE"
ENV_SANDBOX_WARM = "TREADLE_SANDBOX_WARM_PER_FUNCTION"
ENV_DURABLE_CHANNEL = "TREADLE_DURABLE_CHANNEL"


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

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

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
        ):
            if name in env:
                values[key] = env[name]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def token_secret(self) -> bytes:
        """The HMAC key of checkpoint tokens: made once per data dir, never logged."""
        path = self.data_dir / "secrets" / "token.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(secrets.token_bytes(32))
            tmp.chmod(0o600)
            os.replace(tmp, path)
        return path.read_bytes()
