"""Give moto's DynamoDB the isolation DynamoDB has, so concurrency tests test our code.

DynamoDB applies each write (a conditional PutItem, UpdateItem, DeleteItem) atomically,
and a TransactWriteItems is serialisable with respect to single-item operations: two
racing transactions whose conditions overlap can never both succeed. moto's in-memory
backend checks a condition and then applies the write in two Python steps, item after
item, with nothing holding other threads off; two threads of a test (or two request
threads of a ThreadedMotoServer) can both pass the same condition. A test that races
two writers over moto would then fail on moto's behalf, not ours.

One lock around the backend's writes and its point reads restores DynamoDB's
guarantees and nothing more: Query and Scan stay unlocked, as they are read-committed
on DynamoDB too (they may see part of a transaction), so code that wrongly relies on
more than that is not hidden. Installed once for the test process by the root conftest.

moto also ignores TransactWriteItems' ClientRequestToken; DynamoDB does not: the same
token with the same items within 10 minutes succeeds without applying them again (the
same token with other items is an IdempotentParameterMismatchException). Resending a
transaction whose answer was lost relies on it (adapters/aws/dynamo.py), so the moto
handler is given that behaviour too.
"""

from __future__ import annotations

import functools
import json
import threading
from typing import Any

from moto.dynamodb.exceptions import MockValidationException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler

SERIALISED = (
    "put_item",
    "update_item",
    "delete_item",
    "batch_write_item",
    "transact_write_items",
    "execute_transaction",
    "get_item",
    "batch_get_item",
    "transact_get_items",
)
_lock = threading.RLock()


def install() -> None:
    install_tokens()
    for name in SERIALISED:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "_treadle_serialised", False):
            continue

        @functools.wraps(original)
        def serialised(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with _lock:
                return __original(self, *args, **kwargs)

        serialised._treadle_serialised = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, serialised)


# token -> (the request's items, the first answer); never pruned: a test run is short.
_tokens: dict[str, tuple[str, Any]] = {}


def _idempotent(original: Any) -> Any:
    @functools.wraps(original)
    def transact_write_items(self: Any) -> Any:
        token = self.body.get("ClientRequestToken")
        if not token:
            return original(self)
        items = json.dumps(self.body["TransactItems"], sort_keys=True, default=repr)
        with _lock:
            seen = _tokens.get(token)
            if seen is not None:
                if seen[0] != items:
                    raise MockValidationException(
                        "IdempotentParameterMismatch: the token was used with other items"
                    )
                return seen[1]
            answer = original(self)  # a refused transaction raises: its token stays free
            _tokens[token] = (items, answer)
            return answer

    transact_write_items._treadle_serialised = True  # type: ignore[attr-defined]
    return transact_write_items


def install_tokens() -> None:
    if not getattr(DynamoHandler.transact_write_items, "_treadle_serialised", False):
        DynamoHandler.transact_write_items = _idempotent(DynamoHandler.transact_write_items)  # type: ignore[method-assign]
