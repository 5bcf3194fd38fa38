"""The boto3 clients of the AWS backend, and the resources emulated mode creates.

Clients are made once per process (they are thread-safe and hold connection pools) and
injected into every adapter. On AWS the CDK stack owns the table, bucket, queue, tenant
role and token secret; against an emulator (moto server, LocalStack) nothing exists at
first, so `treadle dev --backend aws` creates what is missing (`provision`), with the
same shapes as the stack (`tables.create_tables` is the table's one definition).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from treadle.adapters.aws import failpoint_hooks
from treadle.adapters.aws.errors import error_code
from treadle.adapters.aws.lambda_calls import client_config
from treadle.adapters.aws.tables import create_tables

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

# The stack's values (infra/storage.py): a message stays invisible for longer than the
# orchestrator may run (15 minutes) and goes to the dead-letter queue after 5 receives.
VISIBILITY_TIMEOUT_S: Final = 900 * 6
MAX_RECEIVE_COUNT: Final = 5
_LAMBDA_TRUST: Final = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass(frozen=True)
class AwsClients:
    dynamodb: DynamoDBClient
    s3: S3Client
    sqs: SQSClient
    lambda_: LambdaClient
    iam: IAMClient
    secrets: SecretsManagerClient
    logs: CloudWatchLogsClient
    efs: Any  # facets on EFS (no type stubs installed for it)
    events: Any  # EventBridge, for status-change notifications (no stubs installed)

    @classmethod
    def create(cls, region: str, endpoint_url: str | None = None) -> AwsClients:
        """Every client from one session; `endpoint_url` None means AWS itself.

        Credentials come from the usual chain (the Lambda role, a profile, env vars).
        """
        session = boto3.session.Session(region_name=region)
        # Many engine threads share each client: pools as large as the sandbox's.
        pooled = Config(max_pool_connections=64, retries={"mode": "standard"})

        def make(service: str, config: Config = pooled) -> Any:
            return session.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]

        dynamodb = make("dynamodb")
        failpoint_hooks.register(dynamodb)
        return cls(
            dynamodb=dynamodb,
            # Emulators are reached by IP: bucket names cannot be host names there.
            s3=make("s3", pooled.merge(Config(s3={"addressing_style": "path"})))
            if endpoint_url
            else make("s3"),
            sqs=make("sqs"),
            lambda_=make("lambda", client_config().merge(Config(max_pool_connections=64))),
            iam=make("iam"),
            secrets=make("secretsmanager"),
            logs=make("logs"),
            efs=make("efs"),
            events=make("events"),
        )


def ensure_bucket(s3: S3Client, bucket: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
        log.info("created bucket %s", bucket)
    except ClientError as exc:
        if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def ensure_queue(sqs: SQSClient, stage: str) -> str:
    """The work queue (with its dead-letter queue) of `stage`; its URL."""
    dlq_url = sqs.create_queue(QueueName=f"treadle-{stage}-dead-letters")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
    url = sqs.create_queue(
        QueueName=f"treadle-{stage}-work",
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    return url


def ensure_tenant_role(iam: IAMClient, stage: str) -> str:
    """The role tenant Lambdas run with (Lambda refuses a role that does not exist)."""
    name = f"treadle-{stage}-tenant"
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
    created = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(_LAMBDA_TRUST))
    log.info("created tenant role %s", name)
    return created["Role"]["Arn"]


def read_secret(secrets: SecretsManagerClient, arn: str) -> bytes:
    """The checkpoint-token key: the secret's string (the stack generates 64 characters)."""
    value = secrets.get_secret_value(SecretId=arn)
    text = value.get("SecretString")
    if text:
        return text.encode()
    return bytes(value["SecretBinary"])


# The admin secret's JSON fields (infra/storage.py generates the secret with them).
ADMIN_KEY_ID_FIELD: Final = "accessKeyId"
ADMIN_SECRET_FIELD: Final = "secretAccessKey"


def read_admin_key(secrets: SecretsManagerClient, arn: str) -> tuple[str, str]:
    """The platform admin's key pair from its secret: `{"accessKeyId", "secretAccessKey"}`.

    Every API container reads the same pair, and an operator reads it with
    `aws secretsmanager get-secret-value` (the stack outputs the secret's ARN).
    """
    text = secrets.get_secret_value(SecretId=arn).get("SecretString") or ""
    try:
        value = json.loads(text)
        key_id, secret = value[ADMIN_KEY_ID_FIELD], value[ADMIN_SECRET_FIELD]
    except (ValueError, KeyError, TypeError) as exc:
        # The message names the secret, never its content.
        raise ValueError(
            f"secret {arn} is not JSON with {ADMIN_KEY_ID_FIELD} and {ADMIN_SECRET_FIELD}"
        ) from exc
    if not isinstance(key_id, str) or not isinstance(secret, str) or not key_id or not secret:
        raise ValueError(f"secret {arn} holds an empty or non-string admin key")
    return key_id, secret


@dataclass(frozen=True)
class Provisioned:
    queue_url: str
    tenant_role_arn: str


def provision(
    clients: AwsClients,
    *,
    table: str,
    bucket: str,
    region: str,
    stage: str,
    queue_url: str | None,
    tenant_role_arn: str | None,
) -> Provisioned:
    """Create whatever of the stage's resources is missing (emulators only)."""
    create_tables(clients.dynamodb, table)
    ensure_bucket(clients.s3, bucket, region)
    return Provisioned(
        queue_url=queue_url or ensure_queue(clients.sqs, stage),
        tenant_role_arn=tenant_role_arn or ensure_tenant_role(clients.iam, stage),
    )
