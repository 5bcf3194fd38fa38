"""Worker side of the durable-execution channel.

The durable SDK reaches "the Lambda service" through a cached boto3 client
(`LambdaClient._cached_boto_client`). Inside a sandbox worker the runtime provides that
client: this stand-in sends the SDK's two data-plane calls (checkpoint, get state) over
the worker's own channel to the platform, which runs them in-process. It answers in
boto3's shapes (datetimes, `ClientError`), so the unmodified SDK cannot tell, and it
spares each checkpoint an HTTP round trip, SigV4 signing and boto3's serialisation.

Only the SDK the runtime pre-imported is pointed at it: a function that bundles its own
SDK talks HTTP to the platform's endpoint, as on AWS.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import datetime
import json
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from treadle.adapters.sandbox import protocol

ENV_FLAG = "TREADLE_DURABLE_CHANNEL"
_SDK_SERVICE = "aws_durable_execution_sdk_python.lambda_service"


def _datetimes(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                datetime.datetime.fromtimestamp(v / 1000, tz=datetime.UTC)
                if k.endswith("Timestamp") and isinstance(v, int)
                else _datetimes(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_datetimes(v) for v in value]
    return value


class ChannelDurableClient:
    def __init__(self, chan: socket.socket, lock: threading.Lock) -> None:
        self._chan = chan
        self._lock = lock

    def checkpoint_durable_execution(self, **params: Any) -> dict[str, Any]:
        return self._call("checkpoint", params)

    def get_durable_execution_state(self, **params: Any) -> dict[str, Any]:
        return self._call("state", params)

    def _call(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(params).encode()
        with self._lock:
            protocol.send_frame(self._chan, {"t": "call", "op": op}, body)
            frame = protocol.recv_frame(self._chan)
        if frame is None:
            raise ConnectionError("the platform closed the durable channel")
        header, reply = frame
        if header.get("t") != "reply":
            raise ConnectionError(f"unexpected frame on the durable channel: {header.get('t')}")
        data = json.loads(reply) if reply else {}
        if header.get("error"):
            from botocore.exceptions import ClientError

            error = header["error"]
            response: Any = {
                "Error": {"Code": error["code"], "Message": error["message"]},
                "ResponseMetadata": {"HTTPStatusCode": error["status"]},
            }
            operation = (
                "CheckpointDurableExecution" if op == "checkpoint" else "GetDurableExecutionState"
            )
            raise ClientError(response, operation)
        return _datetimes(data)  # type: ignore[no-any-return]


def install(chan: socket.socket, lock: threading.Lock) -> bool:
    """Point the pre-imported SDK at the channel (the platform sets ENV_FLAG to ask)."""
    service = sys.modules.get(_SDK_SERVICE)
    client_class = getattr(service, "LambdaClient", None)
    if client_class is None:
        return False
    client_class._cached_boto_client = ChannelDurableClient(chan, lock)
    tune_sdk()
    return True


def tune_sdk() -> None:
    """The runtime's changes to when the pre-imported SDK does its work (below): what
    it checkpoints, and in what order, does not change. Public for the benchmark that
    measures the SDK's own CPU as a worker runs it (`benchmarks.sdk_floor`)."""
    _wake_batcher_on_stop()
    _send_blocked_checkpoints_at_once()
    _keep_invocation_threads()


def _keep_invocation_threads() -> None:
    """Run each invocation on the threads of the one before, not on two new ones.

    The SDK's handler wrapper opens a `ThreadPoolExecutor(max_workers=2)` per invocation
    (the handler, the checkpoint batcher) and shuts it down at the end: two threads
    created, started and joined, 0.44 ms of CPU per invocation on a 2-core VM against
    0.09 ms for the same two tasks on kept threads (measured). A worker serves one
    invocation at a time, so one kept pair serves them all. Each task runs in a new,
    empty contextvars context, as it would on a new thread, and the wrapper's `with`
    still waits for its own tasks before the invocation returns.
    """
    execution = sys.modules.get("aws_durable_execution_sdk_python.execution")
    if execution is not None and hasattr(execution, "ThreadPoolExecutor"):
        execution.ThreadPoolExecutor = _InvocationThreads  # type: ignore[attr-defined]


class _InvocationThreads:
    """What the SDK's wrapper uses of a ThreadPoolExecutor, over threads kept for the
    worker's life (created on first use: the zygote that forks workers has no threads).
    A wrapper called while another holds them (a durable handler calling one directly)
    gets threads of its own, as before, so neither waits for the other's."""

    _kept: concurrent.futures.ThreadPoolExecutor | None = None
    _kept_busy = False
    _kept_lock = threading.Lock()

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "") -> None:
        cls = _InvocationThreads
        with cls._kept_lock:
            self._owns_kept = not cls._kept_busy
            if self._owns_kept:
                cls._kept_busy = True
                if cls._kept is None:
                    cls._kept = concurrent.futures.ThreadPoolExecutor(
                        max_workers=max_workers, thread_name_prefix=thread_name_prefix
                    )
                self._pool = cls._kept
            else:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max_workers, thread_name_prefix=thread_name_prefix
                )
        self._futures: list[concurrent.futures.Future[Any]] = []

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        future = self._pool.submit(contextvars.Context().run, fn, *args, **kwargs)
        self._futures.append(future)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            for future in self._futures:
                future.cancel()
        if not self._owns_kept:
            self._pool.shutdown(wait=wait)
            return
        if wait:
            concurrent.futures.wait(self._futures)
            with self._kept_lock:
                _InvocationThreads._kept_busy = False
                self._owns_kept = False

    def __enter__(self) -> _InvocationThreads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)


# What the batcher waits for more work once a synchronous checkpoint is in its batch.
# Positive, so that what is already queued still joins the batch (a zero ends the read
# before looking); tiny, so that nothing is waited for.
BLOCKED_CALLER_WAIT_S = 1e-6


def _send_blocked_checkpoints_at_once() -> None:
    """Send a synchronous checkpoint as soon as it is queued, not 1 ms later.

    With a synchronous checkpoint in its batch, the SDK's batcher waits 1 ms
    (`_BLOCKED_CALLER_WAIT_SECONDS`) for sibling threads to add theirs, because on AWS a
    checkpoint is an HTTPS round trip of several milliseconds that batching saves. Over
    this channel a checkpoint costs a fraction of a millisecond, and the wait made up
    half of every sequential step (W1: 2.2 -> 1.2 ms per step without it). Operations
    already queued still go in the same batch; later ones go in the next. What is
    checkpointed, and in what order, does not change.
    """
    state = sys.modules.get("aws_durable_execution_sdk_python.state")
    if state is not None and hasattr(state, "_BLOCKED_CALLER_WAIT_SECONDS"):
        setattr(state, "_BLOCKED_CALLER_WAIT_SECONDS", BLOCKED_CALLER_WAIT_S)  # noqa: B010


def _wake_batcher_on_stop() -> None:
    """End each invocation as soon as the handler is done, not up to 100 ms later.

    The SDK's checkpoint batcher polls its stop flag every 100 ms while it waits on its
    queue, and the handler wrapper joins it before returning: every durable invocation
    ends up to 100 ms after its handler. Enqueueing the SDK's own wake signal when
    checkpointing stops makes the batcher see the flag at once. Nothing else changes:
    the signal only makes the batcher re-read its state.
    """
    state = sys.modules.get("aws_durable_execution_sdk_python.state")
    execution_state = getattr(state, "ExecutionState", None)
    signal = getattr(getattr(state, "_Signal", None), "REFRESH_WAKE", None)
    stop = getattr(execution_state, "stop_checkpointing", None)
    if execution_state is None or signal is None or stop is None:
        return
    if getattr(stop, "_treadle_wakes", False):
        return

    def stop_checkpointing(self: Any) -> None:
        stop(self)
        queue = getattr(self, "_checkpoint_queue", None)
        if queue is not None:
            queue.put(signal)

    stop_checkpointing._treadle_wakes = True  # type: ignore[attr-defined]
    execution_state.stop_checkpointing = stop_checkpointing
