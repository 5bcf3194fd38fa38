"""The one error tree of Treadle.

Only the API layer maps these to HTTP status codes and AWS error names. `retryable`
tells a caller whether trying the same request again can help.
"""

from __future__ import annotations


class TreadleError(Exception):
    """Base of every error the platform raises on purpose."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(TreadleError):
    """The request is malformed or breaks a protocol rule."""


class InvalidToken(InvalidParameter):
    """A checkpoint token that is forged, malformed, used or of another execution.

    Messages start with "Invalid checkpoint token": the SDK treats exactly those as
    an invocation-level problem (re-drive) rather than failing the execution.
    """


class ValidationFailed(InvalidParameter):
    """A parameter breaks a constraint of the API's model (Lambda's ValidationException)."""


class PayloadTooLarge(InvalidParameter):
    """A request or payload exceeds a documented size limit."""


class NotFound(TreadleError):
    """The named resource does not exist (or belongs to another tenant)."""


class Conflict(TreadleError):
    """The resource is in a state that does not allow the request."""


class AlreadyExists(Conflict):
    """A resource with that name exists already."""


class PreconditionFailed(Conflict):
    """The request named a RevisionId that is no longer the resource's."""


class ExecutionAlreadyStarted(Conflict):
    """A start reused an execution name with a different input."""


class ExecutionClosed(Conflict):
    """The execution has ended: it can take no more events."""


class EventBufferFull(TreadleError):
    """An execution holds as many unconsumed events as it may; its waits drain them."""

    retryable = True


class CallbackTimedOut(TreadleError):
    """The callback is no longer open: it completed or timed out."""


class ConcurrentModification(TreadleError):
    """Another writer changed the record first; reload and try again."""

    retryable = True


class Throttled(TreadleError):
    """Too many requests; back off."""

    retryable = True


class Unavailable(TreadleError):
    """A dependency failed transiently."""

    retryable = True


class InvalidCode(InvalidParameter):
    """The uploaded code package cannot be used (bad zip, missing handler file)."""


class StorageFull(Unavailable):
    """The platform's storage has no room for a write: nothing was written, and the
    same request succeeds once space is freed (no restart needed)."""
