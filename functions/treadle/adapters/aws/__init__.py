"""AWS adapters: DynamoDB (+ S3 for big values) behind the domain's ports.

Clients are always injected, never built at import: the same code runs against AWS,
moto (`mock_aws` or its server) and LocalStack, chosen by how the caller builds them.
"""

from treadle.adapters.aws.dynamodb_executions import DynamoExecutionStore
from treadle.adapters.aws.tables import create_tables

__all__ = ["DynamoExecutionStore", "create_tables"]
