"""Stateful resources: the DynamoDB table, the artifact bucket, the work queue, the token key.

The table, the bucket and the checkpoint-token key are retained when the stack is deleted:
executions, Git packs and tokens outlive a mistaken `cdk destroy`. The queues are not: a
queued message is only a wake-up for state that lives in the table (timers are rows there).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import names
from treadle.adapters.aws import tables

# SQS redrive: a message that fails this many receives goes to the dead-letter queue.
MAX_RECEIVE_COUNT = 5
# AWS guidance for SQS event sources: visibility timeout = 6 x the function timeout, so
# that a batch retried by the poller is not redelivered while still being processed.
VISIBILITY_TIMEOUT_FACTOR = 6
DLQ_RETENTION = Duration.days(14)
# Noncurrent object versions (overwritten or deleted packs) are kept this long.
NONCURRENT_VERSION_RETENTION = Duration.days(90)


_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _string_key(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class Storage(Construct):
    """The platform's state: table, bucket, queue (+ DLQ) and checkpoint-token key."""

    def __init__(self, scope: Construct, id: str, *, orchestrator_timeout: Duration) -> None:
        super().__init__(scope, id)
        self.table = self._table()
        self.bucket = self._bucket()
        self.dead_letter_queue, self.queue = self._queues(orchestrator_timeout)
        # The HMAC key of checkpoint tokens: every API and orchestrator instance must sign
        # and verify with the same key, so it cannot live in a Lambda's /tmp.
        self.token_secret = secretsmanager.Secret(
            self,
            "TokenKey",
            description="Treadle checkpoint-token HMAC key",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _table(self) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "Table",
            partition_key=_string_key(names.TABLE_PARTITION_KEY),
            sort_key=_string_key(names.TABLE_SORT_KEY),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=names.TABLE_TTL_ATTRIBUTE,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # The indexes are the adapter's own definition (see tables.py for why they are
        # KEYS_ONLY or INCLUDE, and sharded).
        attribute_types = {
            a["AttributeName"]: _ATTRIBUTE_TYPES[a["AttributeType"]]
            for a in tables.attribute_definitions()
        }
        for index in tables.global_secondary_indexes():
            keys = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
            projection = index["Projection"]
            sort_key = keys.get("RANGE")
            table.add_global_secondary_index(
                index_name=index["IndexName"],
                partition_key=dynamodb.Attribute(
                    name=keys["HASH"], type=attribute_types[keys["HASH"]]
                ),
                sort_key=(
                    None
                    if sort_key is None
                    else dynamodb.Attribute(name=sort_key, type=attribute_types[sort_key])
                ),
                projection_type=dynamodb.ProjectionType(projection.get("ProjectionType", "ALL")),
                non_key_attributes=projection.get("NonKeyAttributes"),
            )
        return table

    def _bucket(self) -> s3.Bucket:
        return s3.Bucket(
            self,
            "Artifacts",
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-noncurrent-and-abort-uploads",
                    noncurrent_version_expiration=NONCURRENT_VERSION_RETENTION,
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )

    def _queues(self, orchestrator_timeout: Duration) -> tuple[sqs.Queue, sqs.Queue]:
        dlq = sqs.Queue(
            self,
            "WorkDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # Longer than the work queue's (4 days): a message keeps its first enqueue
            # time when it is moved here.
            retention_period=DLQ_RETENTION,
        )
        queue = sqs.Queue(
            self,
            "Work",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(
                orchestrator_timeout.to_seconds() * VISIBILITY_TIMEOUT_FACTOR
            ),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=dlq),
        )
        return dlq, queue
