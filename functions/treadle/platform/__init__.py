"""The composition roots: one `Platform` base, two thin backends.

| module | what |
|---|---|
| `core` | engine, use cases, auth and HTTP app over whatever `Ports` a backend chose |
| `base` | `Platform`: data directory, local sandbox, credentials, start/recover/close |
| `embedded` | SQLite, local files, local sandbox, in-process scheduler |
| `aws` | DynamoDB, S3, SQS, Lambda (or moto/LocalStack), and the platform Lambdas' work |
| `loops` | the orchestrator and sweep Lambdas played by threads in `treadle dev` |
"""

from __future__ import annotations

from treadle.domain.partition import Partition
from treadle.platform.base import ADMIN_PROFILE, TENANT_PROFILE, Platform, StartupError
from treadle.settings import Settings

__all__ = ["ADMIN_PROFILE", "TENANT_PROFILE", "Platform", "StartupError", "open_platform"]


def open_platform(
    settings: Settings,
    *,
    endpoint: str | None = None,
    partition: Partition | None = None,
    lock_fd: int | None = None,
) -> Platform:
    """The platform of `settings.backend`, built and not yet started (`partition`,
    `lock_fd`: one of the processes of `treadle dev --processes N`, embedded only)."""
    if settings.backend == "aws":
        # Imported here: the embedded mode never loads boto3's service models.
        from treadle.platform.aws import AwsPlatform

        return AwsPlatform(settings, endpoint=endpoint)
    from treadle.platform.embedded import EmbeddedPlatform

    return EmbeddedPlatform(settings, endpoint=endpoint, partition=partition, lock_fd=lock_fd)
