"""Big attributes: compressed inline, or offloaded to S3 behind a pointer.

A DynamoDB item holds at most 400 KB and a transaction 4 MB, while one checkpoint can
carry 250 updates of up to 256 KB each. Every bulky attribute (execution record, the
operations and events of a commit, a stored checkpoint response) is therefore stored as
one binary value:

- `Z` + zlib data: the compressed JSON, inline;
- `S` + object key: the compressed JSON is in S3 under that key.

The threshold applies to the compressed size, which is what counts against the item
limit. Keys are content-addressed under a per-execution prefix
(`executions/<sha256(arn)>/<sha256(data)>`): a retried write re-puts an identical object,
and deleting an execution deletes its prefix, including objects of transactions that
were cancelled after their upload.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from typing import TYPE_CHECKING, Final

from treadle.adapters.aws.errors import StoreUnusable, translated
from treadle.domain.errors import PayloadTooLarge

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

log = logging.getLogger(__name__)

INLINE: Final = b"Z"
OFFLOADED: Final = b"S"
KEY_PREFIX: Final = "executions/"
# Without a bucket, values up to this size stay inline; the item's other attributes and
# keys need the rest of the 400 KB.
INLINE_LIMIT_WITHOUT_BUCKET: Final = 350_000


class PayloadCodec:
    def __init__(
        self, s3_client: S3Client | None, bucket: str | None, threshold_bytes: int
    ) -> None:
        if (s3_client is None) != (bucket is None):
            raise ValueError("s3_client and bucket go together: give both or neither")
        self._s3 = s3_client
        self._bucket = bucket
        self._threshold = threshold_bytes

    @staticmethod
    def scope(arn: str) -> str:
        return f"{KEY_PREFIX}{hashlib.sha256(arn.encode()).hexdigest()}/"

    def encode(self, arn: str, raw: bytes) -> bytes:
        """The stored form of `raw`; uploads it first when it is too big to inline."""
        data = zlib.compress(raw, 6)
        if len(data) <= self._threshold:
            return INLINE + data
        if self._s3 is None or self._bucket is None:
            if len(data) <= INLINE_LIMIT_WITHOUT_BUCKET:
                return INLINE + data
            raise PayloadTooLarge(
                f"A {len(raw)}-byte value does not fit in a DynamoDB item and no S3 bucket"
                " is configured for offloading."
            )
        key = f"{self.scope(arn)}{hashlib.sha256(data).hexdigest()}"
        with translated(f"offload {len(data)} bytes to s3://{self._bucket}/{key}"):
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=data)
        log.debug("offloaded %d bytes of %s to %s", len(data), arn, key)
        return OFFLOADED + key.encode()

    def decode(self, stored: bytes) -> bytes:
        tag, body = stored[:1], stored[1:]
        if tag == INLINE:
            return zlib.decompress(body)
        if tag != OFFLOADED:
            raise StoreUnusable(f"Unknown stored value tag {tag!r}: written by a newer Treadle?")
        if self._s3 is None or self._bucket is None:
            raise StoreUnusable("A value is offloaded to S3 but no bucket is configured.")
        key = body.decode()
        with translated(f"read s3://{self._bucket}/{key}"):
            data = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        return zlib.decompress(data)

    def delete_scope(self, arn: str) -> None:
        """Delete every object offloaded for one execution."""
        if self._s3 is None or self._bucket is None:
            return
        prefix = self.scope(arn)
        with translated(f"delete s3://{self._bucket}/{prefix}"):
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                keys: list[ObjectIdentifierTypeDef] = [
                    {"Key": obj["Key"]} for obj in page.get("Contents", []) if "Key" in obj
                ]
                if keys:
                    self._s3.delete_objects(
                        Bucket=self._bucket, Delete={"Objects": keys, "Quiet": True}
                    )
