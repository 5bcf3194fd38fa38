"""The Lambda API as the runtime uses it: tenant function names, which errors mean what,
and the error payload of a failed invocation.

Pure helpers (no client is built here): `lambda_runtime` makes the calls.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TypedDict

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from treadle.adapters.aws.errors import THROTTLING_CODES, TRANSIENT_CODES, error_code
from treadle.domain.errors import (
    ConcurrentModification,
    InvalidParameter,
    NotFound,
    PayloadTooLarge,
    Throttled,
    TreadleError,
    Unavailable,
)

MAX_NAME: Final = 64
HASH_CHARS: Final = 10
NAME_PREFIX: Final = "treadle"
STAGE_RE: Final = re.compile(r"[a-z][a-z0-9]{0,11}")  # infra/names.py STAGE_PATTERN
TENANT_RE: Final = re.compile(r"\d{12}")
ENDPOINT_ENV: Final = "AWS_ENDPOINT_URL_LAMBDA"
# Set by Lambda itself; CreateFunction refuses them in Environment.
RESERVED_ENV: Final = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
# IAM is eventually consistent: a role created moments ago is refused with this.
ROLE_NOT_ASSUMABLE: Final = "cannot be assumed by Lambda"
ROLE_RETRY_DELAYS_S: Final = (1.0, 2.0, 4.0, 8.0, 15.0, 15.0)
WAIT_TIMEOUT_S: Final = 300.0
POLL_S: Final = 1.0


def client_config() -> Config:
    """For the injected client: a synchronous Invoke may take 15 minutes.

    No automatic retries: a retried Invoke after a read timeout runs the handler again.
    """
    return Config(read_timeout=960, connect_timeout=10, retries={"total_max_attempts": 1})


def physical_name(stage: str, tenant: str, function_name: str) -> str:
    """`treadle-<stage>-<tenant>-<function>`, fitted to Lambda's 64 characters.

    Too long: the prefix, the function name's head, `-` and 10 hex digits of
    SHA-256("<tenant>/<function>") (see `lambda_runtime`'s docstring for why it is safe).
    """
    if not STAGE_RE.fullmatch(stage):
        raise ValueError(f"invalid stage {stage!r}")
    if not TENANT_RE.fullmatch(tenant):
        raise ValueError(f"invalid tenant {tenant!r}: 12 digits expected")
    prefix = f"{NAME_PREFIX}-{stage}-{tenant}-"
    if len(prefix) + len(function_name) <= MAX_NAME:
        return prefix + function_name
    digest = hashlib.sha256(f"{tenant}/{function_name}".encode()).hexdigest()[:HASH_CHARS]
    head = function_name[: MAX_NAME - len(prefix) - 1 - HASH_CHARS]
    return f"{prefix}{head}-{digest}"


class DeployFailed(TreadleError):
    """Lambda refused the function or it ended Failed: the tenant or an operator acts."""


def translate(exc: ClientError, action: str) -> TreadleError:
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in THROTTLING_CODES or code in ("TooManyRequestsException", "EC2ThrottledException"):
        return Throttled(f"{action}: Lambda is throttling ({code}); back off.")
    if code == "ResourceConflictException":
        return ConcurrentModification(f"{action}: the function is changing ({message}).")
    if code == "ResourceNotFoundException":
        return NotFound(f"{action}: {message}")
    if code == "RequestTooLargeException":
        return PayloadTooLarge(f"{action}: {message}")
    if code in TRANSIENT_CODES or status >= 500 or code == "ResourceNotReadyException":
        return Unavailable(f"{action}: Lambda failed transiently ({code}: {message}).")
    if code == "InvalidParameterValueException":
        return InvalidParameter(f"{action}: {message}")
    return DeployFailed(f"{action}: {code or 'error'}: {message}")


@contextmanager
def translated(action: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        raise translate(exc, action) from exc
    except BotoCoreError as exc:
        raise Unavailable(f"{action}: Lambda is unreachable ({exc}).") from exc


def role_not_ready(exc: ClientError) -> bool:
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return error_code(exc) == "InvalidParameterValueException" and ROLE_NOT_ASSUMABLE in message


def function_error(body: bytes, request_id: str) -> dict[str, Any]:
    """A FunctionError payload in the sandbox's shape (errorType, errorMessage, ...)."""
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("errorType"), str) and value["errorType"]:
        return value
    message = str(value.get("errorMessage", "")) if isinstance(value, dict) else ""
    if "Task timed out" in message:  # older runtimes leave the type out of timeouts
        detail = message[message.index("Task timed out") :]
        return {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {request_id} Error: {detail}",
        }
    if message:
        return {"errorType": "Runtime.Unknown", "errorMessage": message}
    return {"errorType": "Runtime.InvalidError", "errorMessage": "malformed error payload"}


class Revision(TypedDict, total=False):
    RevisionId: str


def revision(config: Mapping[str, Any]) -> Revision:
    # Optimistic concurrency between deployers; moto does not report RevisionId.
    rev = config.get("RevisionId")
    return {"RevisionId": rev} if isinstance(rev, str) and rev else {}


def changed_meanwhile(exc: ClientError) -> bool:
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", "")).lower()
    return code in ("PreconditionFailedException", "ResourceConflictException") or (
        code == "InvalidParameterValueException" and "codesha256" in message
    )


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000
