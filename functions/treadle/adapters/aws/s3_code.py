"""Code packages in S3 (the `CodeStore` port), with a local cache the sandbox reads.

Every platform process must see the zip a `CreateFunction` stored, whichever process
(API Lambda, orchestrator Lambda, `treadle dev`) received it: zips live in the bucket
under `code/<sha256>.zip`. They are content-addressed, so a put of a key that exists is
skipped and a cached copy never goes stale. The local `LocalCodeStore` keeps a copy of
each zip read and the per-tenant unpacked trees that the local sandbox runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from treadle.adapters.aws.errors import error_code, translated
from treadle.adapters.local.code import LocalCodeStore, validate_zip
from treadle.domain.errors import NotFound

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

PREFIX: Final = "code/"
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


class S3CodeStore:
    def __init__(self, client: S3Client, bucket: str, cache: LocalCodeStore) -> None:
        self._s3 = client
        self._bucket = bucket
        self._cache = cache

    @staticmethod
    def object_key(key: str) -> str:
        return f"{PREFIX}{key}.zip"

    def put(self, zip_bytes: bytes) -> str:
        validate_zip(zip_bytes)
        key = self._cache.put(zip_bytes)
        self._upload(key, zip_bytes)
        return key

    def restore(self, key: str, zip_bytes: bytes) -> None:
        self._cache.restore(key, zip_bytes)
        self._upload(key, zip_bytes)

    def delete(self, key: str) -> None:
        self._cache.delete(key)
        full = self.object_key(key)
        with translated(f"delete s3://{self._bucket}/{full}"):
            self._s3.delete_object(Bucket=self._bucket, Key=full)
        log.info("removed code package %s", key)

    def _upload(self, key: str, zip_bytes: bytes) -> None:
        """Unless the bucket has it already (one HEAD rather than the bytes again)."""
        full = self.object_key(key)
        with translated(f"put s3://{self._bucket}/{full}"):
            try:
                self._s3.head_object(Bucket=self._bucket, Key=full)
                return
            except ClientError as exc:
                if error_code(exc) not in _MISSING:
                    raise
            self._s3.put_object(Bucket=self._bucket, Key=full, Body=zip_bytes)
        log.debug("stored code package %s (%d bytes)", key, len(zip_bytes))

    def get(self, key: str) -> bytes:
        try:
            return self._cache.get(key)
        except NotFound:
            pass
        full = self.object_key(key)
        with translated(f"get s3://{self._bucket}/{full}"):
            try:
                data = self._s3.get_object(Bucket=self._bucket, Key=full)["Body"].read()
            except ClientError as exc:
                if error_code(exc) in _MISSING:
                    raise NotFound(f"Code package {key} not found.") from None
                raise
        self._cache.put(data)
        return data

    def unpacked(self, key: str, tenant: str, *, group: int | None = None) -> Path:
        self.get(key)  # into the local cache first, if another process stored it
        return self._cache.unpacked(key, tenant, group=group)
