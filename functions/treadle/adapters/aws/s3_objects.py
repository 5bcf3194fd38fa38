"""S3 adapter of the artifacts' `ObjectStore`: Git packs and their indexes as objects.

Keys arrive already tenant-prefixed (`tenants/<tenant>/repos/<repo>/packs/...`) and are
stored under `prefix` in one bucket, so the bucket can hold other things (offloaded
execution payloads live under `executions/`). Packs are content-addressed and never
rewritten, so a put is a plain PutObject: S3 makes it atomic (readers see the old
object or the new one) and strongly consistent for the reads that follow.
"""

from __future__ import annotations

import builtins
import logging
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from treadle.adapters.aws.errors import error_code, translated
from treadle.artifacts.ports import ObjectInfo, ObjectNotFound, check_key, check_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# GetObject says NoSuchKey; HeadObject has no body, so only the status remains.
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


class S3ObjectStore:
    """Objects in `bucket` under `prefix`; the client is injected (AWS, moto, LocalStack)."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "git/") -> None:
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"prefix must be empty or end with '/': {prefix!r}")
        self._s3 = client
        self._bucket = bucket
        self._prefix = prefix

    def _key(self, key: str) -> str:
        check_key(key)
        return self._prefix + key

    def put(self, key: str, data: bytes) -> None:
        full = self._key(key)
        with translated(f"put s3://{self._bucket}/{full}"):
            self._s3.put_object(Bucket=self._bucket, Key=full, Body=data)
        log.debug("put %d bytes at %s", len(data), full)

    def get(self, key: str) -> bytes:
        full = self._key(key)
        # ObjectNotFound is no ClientError: it passes through `translated` untouched.
        with translated(f"get s3://{self._bucket}/{full}"):
            try:
                response = self._s3.get_object(Bucket=self._bucket, Key=full)
            except ClientError as exc:
                if error_code(exc) in _MISSING:
                    raise ObjectNotFound(key) from None
                raise
            return response["Body"].read()

    def exists(self, key: str) -> bool:
        full = self._key(key)
        with translated(f"head s3://{self._bucket}/{full}"):
            try:
                self._s3.head_object(Bucket=self._bucket, Key=full)
            except ClientError as exc:
                if error_code(exc) in _MISSING:
                    return False
                raise
        return True

    def list(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        keys: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        with translated(f"list s3://{self._bucket}/{self._prefix}{prefix}"):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix + prefix):
                keys.extend(obj["Key"][len(self._prefix) :] for obj in page.get("Contents", []))
        # S3 lists in UTF-8 byte order, which is code point order: sorting again costs
        # nothing and keeps the contract's order whatever an emulator does.
        keys.sort()
        return keys

    def list_info(self, prefix: str) -> builtins.list[ObjectInfo]:
        check_prefix(prefix)
        found: builtins.list[ObjectInfo] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        with translated(f"list s3://{self._bucket}/{self._prefix}{prefix}"):
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix + prefix):
                found.extend(
                    ObjectInfo(
                        obj["Key"][len(self._prefix) :],
                        obj.get("Size", 0),
                        int(obj["LastModified"].timestamp() * 1000),
                    )
                    for obj in page.get("Contents", [])
                )
        found.sort()
        return found

    def delete(self, key: str) -> None:
        full = self._key(key)
        # DeleteObject of a missing key succeeds: idempotent, as the port asks.
        with translated(f"delete s3://{self._bucket}/{full}"):
            self._s3.delete_object(Bucket=self._bucket, Key=full)
