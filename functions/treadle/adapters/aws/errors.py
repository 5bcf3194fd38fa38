"""botocore errors translated into the domain's error tree at the adapter boundary.

Nothing above the adapters sees a ClientError: the engine retries on
`ConcurrentModification`, the API maps `Throttled`/`Unavailable` to 429/503, and every
translated error says through `retryable` whether sending the same request again helps.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from treadle.domain.errors import (
    ConcurrentModification,
    InvalidParameter,
    PayloadTooLarge,
    Throttled,
    TreadleError,
    Unavailable,
)

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",  # S3
        "ThroughputExceeded",  # a cancellation reason
        "ProvisionedThroughputExceeded",  # a cancellation reason
        "ThrottlingError",  # a cancellation reason
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalServerError",
        "InternalError",  # S3
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# Another transaction held one of the items; reloading and retrying resolves it.
CONFLICT_CODES = frozenset(
    {
        "TransactionConflictException",
        "TransactionConflict",
        "TransactionInProgressException",
        "IdempotentParameterMismatchException",
        "ConditionalCheckFailedException",
    }
)


class StoreUnusable(TreadleError):
    """The table or bucket is missing or misconfigured: an operator must act first."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def cancellation_codes(exc: ClientError) -> list[str]:
    """One code per item of a cancelled transaction ("None" where that item was fine)."""
    reasons = exc.response.get("CancellationReasons")
    if isinstance(reasons, list):
        return [str(r.get("Code", "None")) for r in reasons]
    # Older endpoints only spell the reasons in the message: "... [ConditionalCheckFailed, None]".
    found = re.search(r"\[([^\]]*)\]\s*$", _message(exc))
    return [c.strip() for c in found.group(1).split(",")] if found else []


def translate(exc: ClientError, action: str) -> TreadleError:
    code = error_code(exc)
    message = _message(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in THROTTLING_CODES:
        return Throttled(f"{action}: the store is throttling requests ({code}); back off.")
    if code in CONFLICT_CODES:
        return ConcurrentModification(f"{action}: another writer changed the record first.")
    if code in TRANSIENT_CODES or status >= 500:
        return Unavailable(f"{action}: the store failed transiently ({code}).")
    if code == "ValidationException" and "size" in message.lower():
        return PayloadTooLarge(f"{action}: an item exceeds DynamoDB's size limit ({message}).")
    if code in (
        "ResourceNotFoundException",
        "NoSuchBucket",
        "AccessDeniedException",
        "AccessDenied",
    ):
        return StoreUnusable(f"{action}: {code}: {message}")
    if code == "ValidationException":
        return InvalidParameter(f"{action}: {message}")
    return StoreUnusable(f"{action}: unexpected {code or 'error'}: {message}")


def transaction_error(
    exc: ClientError,
    action: str,
    labels: Sequence[str],
    on_condition: Callable[[str], TreadleError],
) -> TreadleError:
    """The error of a cancelled TransactWriteItems, from its per-item reasons.

    `labels[i]` names the i-th item; a failed condition is decided by the caller
    (`on_condition(label)`), since only it knows whether a refused item means "exists
    already" or "changed meanwhile". A refused condition outranks throttling: retrying
    a transaction whose precondition is false cannot help.
    """
    if error_code(exc) != "TransactionCanceledException":
        return translate(exc, action)
    codes = cancellation_codes(exc)
    for label, code in zip(labels, codes, strict=False):
        if code == "ConditionalCheckFailed":
            return on_condition(label)
    for code in codes:
        if code in THROTTLING_CODES:
            return Throttled(f"{action}: the store is throttling requests ({code}); back off.")
    for code in codes:
        if code in CONFLICT_CODES:
            return ConcurrentModification(f"{action}: another transaction held an item.")
    for code in codes:
        if code == "ItemCollectionSizeLimitExceeded":
            return PayloadTooLarge(f"{action}: the execution's items exceed 10 GB.")
        if code == "ValidationError":
            return PayloadTooLarge(f"{action}: an item was refused ({_message(exc)}).")
    log.warning("%s: transaction cancelled for reasons %s", action, codes)
    return Unavailable(f"{action}: the transaction was cancelled ({', '.join(codes)}).")


@contextmanager
def translated(action: str, service: str = "the store") -> Iterator[None]:
    """Raise every botocore failure inside as the matching domain error."""
    try:
        yield
    except ClientError as exc:
        raise translate(exc, action) from exc
    except BotoCoreError as exc:  # connection reset, read timeout, endpoint unreachable
        raise Unavailable(f"{action}: {service} is unreachable ({exc}).") from exc
