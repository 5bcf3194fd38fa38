"""One contract for every ExecutionStore adapter: SQLite (embedded) and DynamoDB (AWS).

The DynamoDB adapter runs against moto (`mock_aws`, a fresh account per test) with a real
S3 bucket for offloaded payloads. Adding an adapter is one entry in BACKENDS: a factory
taking a fresh temporary directory and returning a Backend.

Tests at the end of the file exercise what only the AWS adapter has: S3 offload without
a bucket and the translation of DynamoDB errors at its boundary.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from treadle.adapters.aws import DynamoExecutionStore, create_tables, tables
from treadle.adapters.aws.items import running_key
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    InvalidParameter,
    NotFound,
    PayloadTooLarge,
    Throttled,
    TreadleError,
)
from treadle.domain.models import (
    BufferedEvent,
    CallbackDetails,
    Event,
    Execution,
    ExecutionDetails,
    ExecutionLimits,
    ExecutionStatus,
    Operation,
    OperationStatus,
    OperationType,
    StepDetails,
)
from treadle.domain.ports import (
    Commit,
    ExecutionQuery,
    ExecutionStore,
    StoredOperation,
    Timer,
    TimerKind,
)

T = "123456789012"
OTHER_TENANT = "210987654321"
TABLE = "treadle-test"
BUCKET = "treadle-test-payloads"
REGION = "us-east-1"
BIG = 300_000  # over the 200 KB offload threshold, and incompressible


@dataclass
class Backend:
    kind: str
    store: ExecutionStore
    # Another store over the same data: a second writer with its own cache.
    another: Callable[[], ExecutionStore]
    s3_keys: Callable[[], list[str]] = field(default=lambda: [])


def _sqlite(tmp: Path) -> tuple[Backend, Callable[[], None]]:
    db = Database(tmp / "executions.db")
    backend = Backend("sqlite", SqliteExecutionStore(db), lambda: SqliteExecutionStore(db))
    return backend, db.close


def _sqlite_processes(tmp: Path) -> tuple[Backend, Callable[[], None]]:
    # Another writer is another server process: its own connection and cache on the same
    # file. Its cached snapshots are optimistic: every commit is conditional on the
    # version it was computed from, and a refused one reloads.
    opened: list[Database] = []

    def make() -> SqliteExecutionStore:
        opened.append(Database(tmp / "executions.db"))
        return SqliteExecutionStore(opened[-1])

    def close() -> None:
        for db in opened:
            db.close()

    return Backend("sqlite-processes", make(), make), close


def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach a real account or an endpoint configured in the environment.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def _dynamodb(tmp: Path) -> tuple[Backend, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    create_tables(dynamodb, TABLE)
    s3.create_bucket(Bucket=BUCKET)

    def make() -> DynamoExecutionStore:
        return DynamoExecutionStore(dynamodb, TABLE, s3_client=s3, bucket=BUCKET)

    def keys() -> list[str]:
        listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        return sorted(obj["Key"] for obj in listed if "Key" in obj)

    return Backend("dynamodb", make(), make, keys), lambda: mock.__exit__(None, None, None)


BACKENDS: dict[str, Callable[[Path], tuple[Backend, Callable[[], None]]]] = {
    "sqlite": _sqlite,
    "sqlite-processes": _sqlite_processes,
    "dynamodb": _dynamodb,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    _aws_env(monkeypatch)
    instance, cleanup = BACKENDS[request.param](tmp_path)
    yield instance
    cleanup()


@pytest.fixture
def store(backend: Backend) -> ExecutionStore:
    return backend.store


# -- builders ------------------------------------------------------------------------


def _execution(
    name: str,
    *,
    start_ms: int = 1_000,
    function: str = "f",
    version: str = "$LATEST",
    tenant: str = T,
    input_payload: str | None = '{"n": 1}',
    pinned_function: dict[str, Any] | None = None,
) -> Execution:
    exec_id = f"id-{name}"
    return Execution(
        arn=(
            f"arn:aws:lambda:{REGION}:{tenant}:function:{function}:{version}"
            f"/durable-execution/{name}/{exec_id}"
        ),
        tenant=tenant,
        function_name=function,
        version=version,
        name=name,
        exec_id=exec_id,
        status=ExecutionStatus.RUNNING,
        input_payload=input_payload,
        input_hash="h",
        start_ms=start_ms,
        execution_timeout_s=3600,
        retention_days=1,
        change_seq=1,
        next_event_id=2,
        pinned_function=pinned_function,
    )


def _op(
    op_id: str,
    create_seq: int,
    change_seq: int,
    *,
    status: OperationStatus = OperationStatus.STARTED,
    result: str | None = None,
) -> StoredOperation:
    op = Operation(
        Id=op_id,
        Name=f"step {op_id}",
        Type=OperationType.STEP,
        StartTimestamp=1_000 + create_seq,
        Status=status,
        StepDetails=StepDetails(Attempt=1, Result=result),
    )
    return StoredOperation(op=op, create_seq=create_seq, change_seq=change_seq)


def _event(event_id: int, event_type: str, op_id: str | None, **details: Any) -> Event:
    return Event.model_validate(
        {
            "EventType": event_type,
            "EventId": event_id,
            "Id": op_id,
            "EventTimestamp": 1_000 + event_id,
            f"{event_type}Details": details,
        }
    )


def _start(store: ExecutionStore, name: str, *, invoke: bool = False, **kwargs: Any) -> Execution:
    """Create an execution the way the engine does: EXECUTION op, first event and, if
    `invoke`, its first invocation due (the INVOKE timer: what the running count counts)."""
    ex = _execution(name, **kwargs)
    root = Operation(
        Id=ex.exec_id,
        Type=OperationType.EXECUTION,
        StartTimestamp=ex.start_ms,
        Status=OperationStatus.STARTED,
        ExecutionDetails=ExecutionDetails(InputPayload=ex.input_payload),
    )
    store.create(
        Commit(
            execution=ex,
            operations=[StoredOperation(op=root, create_seq=1, change_seq=1)],
            events=[_event(1, "ExecutionStarted", ex.exec_id, Input={"Payload": "{}"})],
            set_timers=[Timer(ex.arn, TimerKind.INVOKE, "", ex.start_ms)] if invoke else [],
        )
    )
    return ex


def _change(
    store: ExecutionStore, arn: str, edit: Callable[[Execution], Commit] | None = None
) -> Execution:
    """Load, let `edit` build the commit from the loaded execution, and commit it."""
    ex = store.load(arn).execution
    commit = edit(ex) if edit else Commit(execution=ex)
    store.commit(commit)
    return commit.execution


def _with_events(ex: Execution, count: int, commit: Commit | None = None) -> Commit:
    commit = commit or Commit(execution=ex)
    first = ex.next_event_id
    commit.events = [_event(first + i, "StepStarted", f"op{first + i}") for i in range(count)]
    ex.next_event_id = first + count
    return commit


def _big(size: int = BIG) -> str:
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()


# -- create, get, load ---------------------------------------------------------------


def test_create_then_get_load_and_find_by_name(store: ExecutionStore) -> None:
    ex = _start(store, "run1")
    assert ex.version_seq == 1  # the caller's record is updated like a committed one
    got = store.get(ex.arn)
    assert got == ex
    snap = store.load(ex.arn)
    assert snap.execution == ex
    assert list(snap.operations) == [ex.exec_id]
    root = snap.operations[ex.exec_id]
    assert (root.create_seq, root.change_seq) == (1, 1)
    assert root.op.ExecutionDetails == ExecutionDetails(InputPayload='{"n": 1}')
    assert store.find_by_name(T, "f", "run1") == ex
    assert store.find_by_name(T, "f", "other") is None
    assert store.find_by_name(T, "g", "run1") is None
    assert store.find_by_name(OTHER_TENANT, "f", "run1") is None
    missing = ex.arn.replace("run1", "nope")
    with pytest.raises(NotFound):
        store.get(missing)
    with pytest.raises(NotFound):
        store.load(missing)


def test_an_execution_name_is_unique_per_tenant_and_function(store: ExecutionStore) -> None:
    _start(store, "dup")
    clash = _execution("dup")
    clash.exec_id = "id-second"
    clash.arn = clash.arn.replace("id-dup", "id-second")
    with pytest.raises(AlreadyExists):
        store.create(
            Commit(
                execution=clash,
                operations=[_op("s1", 2, 2)],
                events=[_event(1, "ExecutionStarted", clash.exec_id)],
                set_timers=[Timer(clash.arn, TimerKind.INVOKE, "", 5)],
                new_callbacks=[("cb-of-refused-create", "s1", 0)],
            )
        )
    # The refused create left nothing behind.
    with pytest.raises(NotFound):
        store.get(clash.arn)
    assert store.events(clash.arn, after_id=0, limit=10) == []
    assert store.callback_owner("cb-of-refused-create") is None
    assert store.due_timers(10, 10) == []
    assert store.find_by_name(T, "f", "dup") is not None
    # The same name elsewhere is another execution.
    _start(store, "dup", function="g")
    _start(store, "dup", tenant=OTHER_TENANT)


# -- commit: atomic, versioned ---------------------------------------------------------


def test_a_commit_applies_all_of_its_parts_together(store: ExecutionStore) -> None:
    ex = _start(store, "atomic")

    def edit(loaded: Execution) -> Commit:
        loaded.status = ExecutionStatus.RUNNING
        loaded.invocation_active = True
        loaded.generation = 1
        commit = _with_events(loaded, 2)
        commit.operations = [_op("s1", 2, 2), _op("s2", 3, 3)]
        commit.set_timers = [Timer(loaded.arn, TimerKind.WAIT, "s1", 500)]
        commit.new_callbacks = [("cb-1", "s2", 30)]
        commit.client_token = ("ct-1", '{"CheckpointToken": "t2"}')
        return commit

    after = _change(store, ex.arn, edit)
    assert after.version_seq == 2
    snap = store.load(ex.arn)
    assert snap.execution.version_seq == 2 and snap.execution.generation == 1
    assert sorted(snap.operations) == sorted([ex.exec_id, "s1", "s2"])
    assert [e.EventId for e in store.events(ex.arn, after_id=0, limit=10)] == [1, 2, 3]
    assert store.due_timers(1_000, 10) == [Timer(ex.arn, TimerKind.WAIT, "s1", 500)]
    assert store.callback_owner("cb-1") == (ex.arn, "s2", 30)
    assert store.client_token_response(ex.arn, "ct-1") == '{"CheckpointToken": "t2"}'
    assert store.active_invocations() == [ex.arn]


def test_a_stale_version_is_refused_and_leaves_no_trace(backend: Backend) -> None:
    store = backend.store
    ex = _start(store, "stale")
    first = store.load(ex.arn).execution
    second = store.load(ex.arn).execution
    first.generation = 1
    store.commit(Commit(execution=first, operations=[_op("a", 2, 2)]))
    second.generation = 7
    stale = _with_events(
        second,
        3,
        Commit(
            execution=second,
            operations=[_op("b", 2, 2)],
            set_timers=[Timer(ex.arn, TimerKind.RETRY, "b", 5)],
            new_callbacks=[("cb-stale", "b", 0)],
            client_token=("ct-stale", "{}"),
        ),
    )
    with pytest.raises(ConcurrentModification) as refused:
        store.commit(stale)
    assert refused.value.retryable
    snap = store.load(ex.arn)
    assert snap.execution.version_seq == 2 and snap.execution.generation == 1
    assert sorted(snap.operations) == sorted([ex.exec_id, "a"])
    assert [e.EventId for e in store.events(ex.arn, after_id=0, limit=10)] == [1]
    assert store.due_timers(10**12, 10) == []
    assert store.callback_owner("cb-stale") is None
    assert store.client_token_response(ex.arn, "ct-stale") is None
    # Computed again from the current version, the same change applies.
    retried = snap.execution
    retried.generation = 7
    store.commit(Commit(execution=retried, operations=[_op("b", 3, 3)]))
    assert store.get(ex.arn).version_seq == 3


def test_a_writer_behind_another_is_refused_once_then_converges(backend: Backend) -> None:
    mine, theirs = backend.store, backend.another()
    ex = _start(mine, "caches")  # `mine` now knows version 1
    mine.load(ex.arn)
    loaded = theirs.load(ex.arn).execution
    loaded.generation = 3
    theirs.commit(Commit(execution=loaded, operations=[_op("theirs", 2, 2)]))
    if backend.kind == "dynamodb":
        # Many writers (one per Lambda) share the table: every load is fresh.
        assert "theirs" in mine.load(ex.arn).operations
    # A change computed from version 1 never overwrites version 2...
    with pytest.raises(ConcurrentModification):
        mine.commit(Commit(execution=ex.model_copy(), operations=[_op("lost", 2, 2)]))
    # ...and once refused, the writer's next load is the current version.
    snap = mine.load(ex.arn)
    assert snap.execution.version_seq == 2 and snap.execution.generation == 3
    assert sorted(snap.operations) == sorted([ex.exec_id, "theirs"])
    mine.commit(Commit(execution=snap.execution, operations=[_op("mine", 3, 3)]))
    final = backend.another().load(ex.arn)
    assert final.execution.version_seq == 3
    assert sorted(final.operations) == sorted([ex.exec_id, "theirs", "mine"])


def test_of_concurrent_writers_from_one_version_exactly_one_applies(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.kind == "dynamodb":
        # moto's in-process backend is not thread-safe ("dictionary changed size during
        # iteration" under load): one request at a time there, as DynamoDB's own
        # serialization of conditional writes on an item would order them anyway. The
        # writers still race to load, build and send their commits.
        from moto.core.botocore_stubber import BotocoreStubber

        lock = threading.Lock()
        original = BotocoreStubber.__call__

        def serialized(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(self, *args, **kwargs)

        monkeypatch.setattr(BotocoreStubber, "__call__", serialized)
    ex = _start(backend.store, "race")
    writers = [backend.another() for _ in range(6)]
    loaded = [w.load(ex.arn).execution for w in writers]
    barrier = threading.Barrier(len(writers))
    outcomes: list[str] = []

    def write(i: int) -> None:
        loaded[i].generation = i + 1
        barrier.wait()
        try:
            writers[i].commit(Commit(execution=loaded[i], operations=[_op(f"w{i}", 2, 2)]))
            outcomes.append(f"w{i}")
        except ConcurrentModification:
            outcomes.append("refused")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1 and len(outcomes) == len(writers)
    snap = backend.another().load(ex.arn)
    assert snap.execution.version_seq == 2
    assert snap.execution.generation == int(winners[0][1:]) + 1
    assert sorted(snap.operations) == sorted([ex.exec_id, winners[0]])


def test_a_commit_of_a_deleted_execution_is_refused(store: ExecutionStore) -> None:
    ex = _start(store, "gone")
    loaded = store.load(ex.arn).execution
    store.delete(ex.arn)
    with pytest.raises(ConcurrentModification):
        store.commit(Commit(execution=loaded, operations=[_op("x", 2, 2)]))
    with pytest.raises(NotFound):
        store.get(ex.arn)


# -- client tokens, callbacks ----------------------------------------------------------


def test_client_tokens_replay_the_stored_response(store: ExecutionStore) -> None:
    ex = _start(store, "tokens")
    other = _start(store, "tokens2", start_ms=2_000)

    def token(value: str, response: str) -> Callable[[Execution], Commit]:
        return lambda loaded: Commit(execution=loaded, client_token=(value, response))

    _change(store, ex.arn, token("ct", '{"r": 1}'))
    assert store.client_token_response(ex.arn, "ct") == '{"r": 1}'
    assert store.client_token_response(ex.arn, "unknown") is None
    assert store.client_token_response(other.arn, "ct") is None  # scoped to its execution
    _change(store, ex.arn, token("ct2", '{"r": 2}'))
    assert store.client_token_response(ex.arn, "ct") == '{"r": 1}'
    assert store.client_token_response(ex.arn, "ct2") == '{"r": 2}'


def test_callback_ids_resolve_to_their_owner(store: ExecutionStore) -> None:
    ex = _start(store, "cbs")
    _change(
        store,
        ex.arn,
        lambda loaded: Commit(
            execution=loaded,
            operations=[_op("c1", 2, 2), _op("c2", 3, 3)],
            new_callbacks=[("cb-a", "c1", 0), ("cb-b", "c2", 45)],
        ),
    )
    assert store.callback_owner("cb-a") == (ex.arn, "c1", 0)
    assert store.callback_owner("cb-b") == (ex.arn, "c2", 45)
    assert store.callback_owner("cb-unknown") is None


def _callback_commit(ex: Execution, count: int, prefix: str) -> Commit:
    ops, callbacks = [], []
    for i in range(count):
        op = Operation(
            Id=f"{prefix}{i}",
            Type=OperationType.CALLBACK,
            StartTimestamp=2_000,
            Status=OperationStatus.STARTED,
            CallbackDetails=CallbackDetails(CallbackId=f"{prefix}-cb-{i}"),
        )
        ops.append(StoredOperation(op=op, create_seq=2 + i, change_seq=2 + i))
        callbacks.append((f"{prefix}-cb-{i}", op.Id, i % 3))
    return _with_events(ex, count, Commit(execution=ex, operations=ops, new_callbacks=callbacks))


def test_a_commit_starting_more_callbacks_than_one_transaction_holds(backend: Backend) -> None:
    store, behind = backend.store, backend.another()
    ex = _start(store, "many")
    stale = behind.load(ex.arn).execution  # a writer that will be one version behind
    # 150 callbacks plus the commit's own items pass DynamoDB's 100 items per transaction.
    store.commit(_callback_commit(store.load(ex.arn).execution, 150, "ok"))
    owners = [store.callback_owner(f"ok-cb-{i}") for i in range(150)]
    assert owners == [(ex.arn, f"ok{i}", i % 3) for i in range(150)]
    assert len(store.load(ex.arn).operations) == 151
    # Refused as a whole, the same shape of commit leaves no callback reachable, even
    # where the refusal comes only from the transaction itself.
    with pytest.raises(ConcurrentModification):
        behind.commit(_callback_commit(stale, 150, "no"))
    assert all(store.callback_owner(f"no-cb-{i}") is None for i in range(150))
    assert all(behind.callback_owner(f"no-cb-{i}") is None for i in range(150))
    assert len(backend.another().load(ex.arn).operations) == 151


# -- history and operations pages ------------------------------------------------------


def test_events_page_forward_and_backward(store: ExecutionStore) -> None:
    ex = _start(store, "history")
    # Commits of different sizes: pages must cut inside one commit's events too.
    for count in (3, 1, 5, 2):
        _change(store, ex.arn, lambda loaded, n=count: _with_events(loaded, n))
    ids = list(range(1, 13))
    for limit in (1, 2, 4, 7, 20):
        for after in range(14):
            forward = store.events(ex.arn, after_id=after, limit=limit)
            assert [e.EventId for e in forward] == [i for i in ids if i > after][:limit]
            backward = store.events(ex.arn, after_id=after, limit=limit, reverse=True)
            below = [i for i in reversed(ids) if after == 0 or i < after]
            assert [e.EventId for e in backward] == below[:limit], (after, limit)
    sample = store.events(ex.arn, after_id=1, limit=1)[0]
    assert sample == _event(2, "StepStarted", "op2")
    assert store.events(ex.arn.replace("history", "none"), after_id=0, limit=5) == []


def test_operations_page_in_creation_order_with_latest_state(store: ExecutionStore) -> None:
    ex = _start(store, "ops")
    _change(
        store,
        ex.arn,
        lambda loaded: Commit(execution=loaded, operations=[_op("a", 2, 2), _op("b", 3, 3)]),
    )
    _change(store, ex.arn, lambda loaded: Commit(execution=loaded, operations=[_op("c", 4, 4)]))
    done = _op("a", 2, 5, status=OperationStatus.SUCCEEDED, result='"A"')
    _change(store, ex.arn, lambda loaded: Commit(execution=loaded, operations=[done]))
    page = store.operations_page(ex.arn, after_seq=0, limit=10)
    assert [(s.op.Id, s.create_seq, s.change_seq) for s in page] == [
        (ex.exec_id, 1, 1),
        ("a", 2, 5),
        ("b", 3, 3),
        ("c", 4, 4),
    ]
    assert page[1].op.Status is OperationStatus.SUCCEEDED
    assert page[1].op.StepDetails == StepDetails(Attempt=1, Result='"A"')
    assert [s.op.Id for s in store.operations_page(ex.arn, after_seq=1, limit=2)] == ["a", "b"]
    assert [s.op.Id for s in store.operations_page(ex.arn, after_seq=3, limit=2)] == ["c"]
    assert store.operations_page(ex.arn, after_seq=4, limit=2) == []
    assert store.load(ex.arn).operations["a"].op == done.op


def test_find_event_returns_the_first_of_a_type_about_an_operation(
    store: ExecutionStore,
) -> None:
    ex = _start(store, "find")

    def events(*specs: tuple[str, str]) -> Callable[[Execution], Commit]:
        def edit(loaded: Execution) -> Commit:
            first = loaded.next_event_id
            made = [_event(first + i, t, op, Mark=first + i) for i, (t, op) in enumerate(specs)]
            loaded.next_event_id = first + len(specs)
            return Commit(execution=loaded, events=made)

        return edit

    _change(store, ex.arn, events(("StepStarted", "s1"), ("StepStarted", "s2")))
    _change(store, ex.arn, events(("StepFailed", "s1")))
    _change(store, ex.arn, events(("StepStarted", "s1"), ("StepSucceeded", "s1")))
    # The type the engine asks for (a chained invoke's start), which SQLite indexes.
    _change(store, ex.arn, events(("ChainedInvokeStarted", "c2"), ("ChainedInvokeStarted", "c1")))
    _change(store, ex.arn, events(("ChainedInvokeStarted", "c1")))
    chained = store.find_event(ex.arn, "c1", "ChainedInvokeStarted")
    assert chained is not None and chained.EventId == 8
    assert (chained.model_extra or {})["ChainedInvokeStartedDetails"] == {"Mark": 8}
    assert store.find_event(ex.arn, "s1", "ChainedInvokeStarted") is None
    assert store.find_event(ex.arn, "c1", "StepStarted") is None
    found = store.find_event(ex.arn, "s1", "StepStarted")
    assert found is not None and found.EventId == 2
    assert (found.model_extra or {})["StepStartedDetails"] == {"Mark": 2}
    succeeded = store.find_event(ex.arn, "s1", "StepSucceeded")
    assert succeeded is not None and succeeded.EventId == 6
    assert store.find_event(ex.arn, "s2", "StepFailed") is None
    assert store.find_event(ex.arn, "s3", "StepStarted") is None
    assert store.find_event(ex.arn.replace("find", "none"), "s1", "StepStarted") is None


# -- timers ----------------------------------------------------------------------------


def _timers(store: ExecutionStore, arn: str, **changes: Any) -> None:
    _change(store, arn, lambda loaded: Commit(execution=loaded, **changes))


def test_timers_come_due_in_order(store: ExecutionStore) -> None:
    assert store.due_timers(10**12, 10) == [] and store.next_due_ms() is None
    a = _start(store, "ta")
    b = _start(store, "tb", start_ms=2_000)
    _timers(
        store,
        a.arn,
        set_timers=[Timer(a.arn, TimerKind.INVOKE, "", 10), Timer(a.arn, TimerKind.WAIT, "w", 50)],
    )
    _timers(store, b.arn, set_timers=[Timer(b.arn, TimerKind.RETRY, "r", 20)])
    a10, a50 = Timer(a.arn, TimerKind.INVOKE, "", 10), Timer(a.arn, TimerKind.WAIT, "w", 50)
    b20 = Timer(b.arn, TimerKind.RETRY, "r", 20)
    assert store.next_due_ms() == 10
    assert store.due_timers(9, 10) == []
    assert store.due_timers(30, 10) == [a10, b20]
    assert store.due_timers(100, 2) == [a10, b20]
    assert store.due_timers(100, 3) == [a10, b20, a50]
    # Setting a timer again moves it; clearing one removes only that one.
    _timers(
        store,
        a.arn,
        set_timers=[Timer(a.arn, TimerKind.INVOKE, "", 70)],
        clear_timers=[(TimerKind.WAIT, "w")],
    )
    assert store.due_timers(100, 10) == [b20, Timer(a.arn, TimerKind.INVOKE, "", 70)]
    assert store.next_due_ms() == 20
    # Clearing all then setting in one commit leaves only what was set.
    _timers(
        store,
        b.arn,
        clear_all_timers=True,
        set_timers=[Timer(b.arn, TimerKind.RETENTION, "", 90)],
    )
    assert store.due_timers(100, 10) == [
        Timer(a.arn, TimerKind.INVOKE, "", 70),
        Timer(b.arn, TimerKind.RETENTION, "", 90),
    ]
    _timers(store, a.arn, clear_all_timers=True)
    _timers(store, b.arn, clear_timers=[(TimerKind.RETENTION, "")])
    assert store.due_timers(10**12, 10) == [] and store.next_due_ms() is None


def test_a_commit_can_set_a_timer_on_another_execution(store: ExecutionStore) -> None:
    parent = _start(store, "parent")
    child = _start(store, "child", start_ms=2_000)
    done = Timer(parent.arn, TimerKind.CHILD_DONE, "op-1", 40)
    # The child's closing commit notifies its parent in the same transaction.
    _timers(store, child.arn, set_timers=[done, Timer(child.arn, TimerKind.RETENTION, "", 900)])
    assert store.due_timers(100, 10) == [done]
    assert store.next_due_ms() == 40
    # The parent clears it like one of its own.
    _timers(
        store,
        parent.arn,
        clear_timers=[(TimerKind.CHILD_DONE, "op-1")],
        set_timers=[Timer(parent.arn, TimerKind.INVOKE, "", 60)],
    )
    assert store.due_timers(100, 10) == [Timer(parent.arn, TimerKind.INVOKE, "", 60)]
    _timers(store, child.arn, set_timers=[Timer(parent.arn, TimerKind.CHILD_DONE, "op-2", 45)])
    _timers(store, parent.arn, clear_all_timers=True)
    assert store.due_timers(1_000, 10) == [Timer(child.arn, TimerKind.RETENTION, "", 900)]


def test_clearing_more_outbox_timers_than_one_transaction_holds(store: ExecutionStore) -> None:
    parent = _start(store, "busy-parent")
    child = _start(store, "children", start_ms=2_000)
    for first in range(0, 120, 30):
        timers = [
            Timer(parent.arn, TimerKind.CHILD_DONE, f"op-{i}", 100 + i)
            for i in range(first, first + 30)
        ]
        _timers(store, child.arn, set_timers=timers)
    assert len(store.due_timers(10**6, 500)) == 120
    assert store.due_timers(10**6, 3) == [
        Timer(parent.arn, TimerKind.CHILD_DONE, f"op-{i}", 100 + i) for i in range(3)
    ]
    _timers(store, parent.arn, clear_all_timers=True)
    assert store.due_timers(10**6, 500) == [] and store.next_due_ms() is None


def test_active_invocations_are_those_holding_a_lease(store: ExecutionStore) -> None:
    a = _start(store, "la")
    b = _start(store, "lb", start_ms=2_000)
    assert store.active_invocations() == []

    def lease(active: bool) -> Callable[[Execution], Commit]:
        def edit(loaded: Execution) -> Commit:
            loaded.invocation_active = active
            return Commit(execution=loaded)

        return edit

    _change(store, a.arn, lease(True))
    _change(store, b.arn, lease(True))
    assert sorted(store.active_invocations()) == sorted([a.arn, b.arn])
    _change(store, a.arn, lease(False))
    assert store.active_invocations() == [b.arn]


# -- listing ---------------------------------------------------------------------------


def _close(store: ExecutionStore, arn: str, status: ExecutionStatus) -> None:
    def edit(loaded: Execution) -> Commit:
        loaded.status = status
        loaded.end_ms = loaded.start_ms + 1
        return Commit(execution=loaded)

    _change(store, arn, edit)


@pytest.fixture
def listed(store: ExecutionStore) -> dict[str, Execution]:
    """Seven executions of f at distinct start times, and some that must never appear."""
    made = {
        "e1": _start(store, "e1", start_ms=100),
        "e2": _start(store, "e2", start_ms=200, version="1"),
        "e3": _start(store, "e3", start_ms=300),
        "e4": _start(store, "e4", start_ms=400, version="1"),
        "e5": _start(store, "e5", start_ms=500),
        "e6": _start(store, "e6", start_ms=600),
        "e7": _start(store, "e7", start_ms=700),
    }
    _close(store, made["e2"].arn, ExecutionStatus.SUCCEEDED)
    _close(store, made["e3"].arn, ExecutionStatus.FAILED)
    _close(store, made["e5"].arn, ExecutionStatus.SUCCEEDED)
    _close(store, made["e6"].arn, ExecutionStatus.STOPPED)
    _start(store, "e1", function="g", start_ms=150)
    _start(store, "e1", tenant=OTHER_TENANT, start_ms=160)
    return made


def _names(store: ExecutionStore, query: ExecutionQuery) -> list[str]:
    page, _ = store.list_executions(T, "f", query)
    return [ex.name for ex in page]


def _all_pages(store: ExecutionStore, query: ExecutionQuery) -> list[list[str]]:
    pages, marker = [], None
    while True:
        q = ExecutionQuery(**{**query.__dict__, "marker": marker})
        page, marker = store.list_executions(T, "f", q)
        pages.append([ex.name for ex in page])
        if marker is None:
            return pages


def test_list_executions_filters(store: ExecutionStore, listed: dict[str, Execution]) -> None:
    every = ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]
    assert _names(store, ExecutionQuery()) == every
    assert _names(store, ExecutionQuery(reverse=True)) == every[::-1]
    page, marker = store.list_executions(T, "f", ExecutionQuery())
    assert marker is None and page[1] == store.get(listed["e2"].arn)
    succeeded = frozenset({ExecutionStatus.SUCCEEDED})
    assert _names(store, ExecutionQuery(statuses=succeeded)) == ["e2", "e5"]
    running_or_failed = frozenset({ExecutionStatus.RUNNING, ExecutionStatus.FAILED})
    assert _names(store, ExecutionQuery(statuses=running_or_failed)) == ["e1", "e3", "e4", "e7"]
    assert _names(store, ExecutionQuery(name="e4")) == ["e4"]
    assert _names(store, ExecutionQuery(name="e4", statuses=succeeded)) == []
    assert _names(store, ExecutionQuery(version="1")) == ["e2", "e4"]
    assert _names(store, ExecutionQuery(started_after_ms=300)) == ["e3", "e4", "e5", "e6", "e7"]
    assert _names(store, ExecutionQuery(started_before_ms=300)) == ["e1", "e2", "e3"]
    window = ExecutionQuery(started_after_ms=250, started_before_ms=600, reverse=True)
    assert _names(store, window) == ["e6", "e5", "e4", "e3"]
    assert _names(store, ExecutionQuery(started_after_ms=800)) == []
    assert store.list_executions(T, "nothing", ExecutionQuery()) == ([], None)


def test_list_executions_pages_with_markers(
    store: ExecutionStore, listed: dict[str, Execution]
) -> None:
    assert _all_pages(store, ExecutionQuery(limit=2)) == [
        ["e1", "e2"],
        ["e3", "e4"],
        ["e5", "e6"],
        ["e7"],
    ]
    assert _all_pages(store, ExecutionQuery(limit=3, reverse=True)) == [
        ["e7", "e6", "e5"],
        ["e4", "e3", "e2"],
        ["e1"],
    ]
    # Several statuses are merged into one start order across pages.
    closed = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.STOPPED})
    assert _all_pages(store, ExecutionQuery(statuses=closed, limit=3)) == [
        ["e2", "e3", "e5"],
        ["e6"],
    ]
    assert _all_pages(store, ExecutionQuery(statuses=closed, limit=1, reverse=True)) == [
        ["e6"],
        ["e5"],
        ["e3"],
        ["e2"],
    ]
    assert _all_pages(store, ExecutionQuery(version="$LATEST", limit=2)) == [
        ["e1", "e3"],
        ["e5", "e6"],
        ["e7"],
    ]
    with pytest.raises(InvalidParameter):
        store.list_executions(T, "f", ExecutionQuery(marker="not-a-marker"))


# -- delete, big payloads ----------------------------------------------------------------


def test_delete_removes_the_execution_and_everything_about_it(backend: Backend) -> None:
    store = backend.store
    keep = _start(store, "keep", start_ms=50)
    ex = _start(store, "doomed", input_payload=_big())

    def edit(loaded: Execution) -> Commit:
        loaded.invocation_active = True
        commit = _with_events(loaded, 2)
        commit.operations = [_op("s", 2, 2, result=_big())]
        commit.set_timers = [Timer(loaded.arn, TimerKind.WAIT, "s", 10)]
        commit.new_callbacks = [("cb-doomed", "s", 0)]
        commit.client_token = ("ct", "{}")
        return commit

    _change(store, ex.arn, edit)
    store.delete(ex.arn)
    with pytest.raises(NotFound):
        store.get(ex.arn)
    with pytest.raises(NotFound):
        store.load(ex.arn)
    assert store.find_by_name(T, "f", "doomed") is None
    assert store.events(ex.arn, after_id=0, limit=10) == []
    assert store.operations_page(ex.arn, after_seq=0, limit=10) == []
    assert store.find_event(ex.arn, "op2", "StepStarted") is None
    assert store.callback_owner("cb-doomed") is None
    assert store.client_token_response(ex.arn, "ct") is None
    assert store.due_timers(10**12, 10) == []
    assert store.active_invocations() == []
    assert _names(store, ExecutionQuery()) == ["keep"]
    if backend.kind == "dynamodb":
        assert backend.s3_keys() == []  # its offloaded payloads went with it
    store.delete(ex.arn)  # deleting again is a no-op
    assert store.get(keep.arn) == keep
    again = _start(store, "doomed", start_ms=3_000)  # the name is free again
    assert store.find_by_name(T, "f", "doomed") == again


def test_payloads_over_the_offload_threshold_round_trip(backend: Backend) -> None:
    store = backend.store
    big_input, big_result, big_detail, big_response = _big(), _big(), _big(), _big()
    ex = _start(store, "big", input_payload=big_input)

    def edit(loaded: Execution) -> Commit:
        loaded.result = big_result
        commit = Commit(execution=loaded, operations=[_op("s", 2, 2, result=big_result)])
        commit.events = [_event(2, "StepSucceeded", "s", Result={"Payload": big_detail})]
        loaded.next_event_id = 3
        commit.client_token = ("ct-big", big_response)
        return commit

    _change(store, ex.arn, edit)
    # A fresh store has nothing cached: everything is read back from the table (and S3).
    fresh = backend.another()
    got = fresh.get(ex.arn)
    assert got.input_payload == big_input and got.result == big_result
    snap = fresh.load(ex.arn)
    assert snap.operations[ex.exec_id].op.ExecutionDetails == ExecutionDetails(
        InputPayload=big_input
    )
    step = snap.operations["s"].op.StepDetails
    assert step is not None and step.Result == big_result
    events = fresh.events(ex.arn, after_id=1, limit=5)
    assert [(e.model_extra or {}).get("StepSucceededDetails") for e in events] == [
        {"Result": {"Payload": big_detail}}
    ]
    assert fresh.client_token_response(ex.arn, "ct-big") == big_response
    listed, _ = fresh.list_executions(T, "f", ExecutionQuery())
    assert [e.input_payload for e in listed] == [big_input]
    if backend.kind == "dynamodb":
        # Record at versions 1 and 2, create's and commit's operations and events, the
        # response: every one over the threshold, so each went to S3.
        assert len(backend.s3_keys()) >= 6


# -- the running count (the tenant's running-executions quota) ----------------------------


def _running(store: ExecutionStore, tenant: str = T) -> int:
    return store.count_running(tenant)


def _run(store: ExecutionStore, name: str, **kwargs: Any) -> Execution:
    """A start with its first invocation due: running for the quota."""
    return _start(store, name, invoke=True, **kwargs)


def _set_status(status: ExecutionStatus) -> Callable[[Execution], Commit]:
    def edit(loaded: Execution) -> Commit:
        loaded.status = status
        return Commit(execution=loaded)

    return edit


def test_starts_raise_the_running_count_and_closes_lower_it(store: ExecutionStore) -> None:
    assert _running(store) == 0
    runs = [_run(store, f"run{i}", start_ms=1_000 + i) for i in range(5)]
    _run(store, "run0", function="g")  # same name, other function: another execution
    assert _running(store) == 6
    for ex, status in zip(
        runs,
        [
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.FAILED,
            ExecutionStatus.TIMED_OUT,
            ExecutionStatus.STOPPED,
        ],
        strict=False,
    ):
        _close(store, ex.arn, status)
    assert _running(store) == 2
    # Commits that leave the status as it is move nothing, closed or running.
    _change(store, runs[0].arn, lambda loaded: _with_events(loaded, 2))
    _change(store, runs[4].arn, lambda loaded: _with_events(loaded, 2))
    assert _running(store) == 2
    # Like the embedded store, only RUNNING counts: a paused execution is not running.
    _change(store, runs[4].arn, _set_status(ExecutionStatus.PAUSED))
    assert _running(store) == 1
    _change(store, runs[4].arn, _set_status(ExecutionStatus.RUNNING))
    assert _running(store) == 2
    _change(store, runs[4].arn, _set_status(ExecutionStatus.PAUSED))
    _close(store, runs[4].arn, ExecutionStatus.STOPPED)  # stopped while paused
    assert _running(store) == 1


def _invoke_timers(
    clear: list[TimerKind], set_: list[tuple[TimerKind, str, int]]
) -> Callable[[Execution], Commit]:
    """A commit that clears and sets the execution's own timers, as the engine does."""

    def edit(loaded: Execution) -> Commit:
        return Commit(
            execution=loaded,
            clear_timers=[(kind, "") for kind in clear],
            set_timers=[Timer(loaded.arn, kind, op_id, due) for kind, op_id, due in set_],
        )

    return edit


def test_a_parked_execution_leaves_the_running_count_and_a_firing_timer_brings_it_back(
    store: ExecutionStore,
) -> None:
    waiting, calling, busy = _run(store, "waiting"), _run(store, "calling"), _run(store, "busy")
    assert _running(store) == 3
    # Each takes its invocation's lease: the INVOKE timer becomes the lease deadline.
    for ex in (waiting, calling, busy):
        _change(store, ex.arn, _invoke_timers([TimerKind.INVOKE], [(TimerKind.INVOKE, "", 90_000)]))
    assert _running(store) == 3
    # The invocations end parked: one on a wait, one on a callback (its timeout timer).
    _change(store, waiting.arn, _invoke_timers([TimerKind.INVOKE], [(TimerKind.WAIT, "w1", 5_000)]))
    assert _running(store) == 2
    _change(
        store,
        calling.arn,
        _invoke_timers([TimerKind.INVOKE], [(TimerKind.CALLBACK_TIMEOUT, "c1", 9_000)]),
    )
    assert _running(store) == 1
    assert store.get(waiting.arn).status == ExecutionStatus.RUNNING  # parked, still RUNNING
    # The wait elapses: its timer goes, the next invocation is due.
    _change(store, waiting.arn, _invoke_timers([], [(TimerKind.INVOKE, "", 5_000)]))
    assert _running(store) == 2
    # The callback is answered: the next invocation is due, beside the timeout timer.
    _change(store, calling.arn, _invoke_timers([], [(TimerKind.INVOKE, "", 6_000)]))
    assert _running(store) == 3

    # Closing clears every timer: counted down once.
    def close(loaded: Execution) -> Commit:
        loaded.status = ExecutionStatus.SUCCEEDED
        return Commit(execution=loaded, clear_all_timers=True)

    _change(store, busy.arn, close)
    assert _running(store) == 2
    store.delete(calling.arn)  # deleting one that awaits an invocation uncounts it
    assert _running(store) == 1
    assert _running(store, OTHER_TENANT) == 0


def test_a_start_without_an_invocation_due_is_not_running(store: ExecutionStore) -> None:
    ex = _start(store, "parked-at-birth")  # e.g. written QUEUED-like, nothing scheduled
    assert _running(store) == 0
    _change(store, ex.arn, _invoke_timers([], [(TimerKind.INVOKE, "", 2_000)]))
    assert _running(store) == 1
    # A paused execution does not count even with its invocation still due.
    _change(store, ex.arn, _set_status(ExecutionStatus.PAUSED))
    assert _running(store) == 0


def test_a_duplicate_start_is_not_counted_twice(store: ExecutionStore) -> None:
    first = _run(store, "once")
    for _ in range(2):  # a client retrying its start with the same name
        with pytest.raises(AlreadyExists):
            _run(store, "once")
    assert store.find_by_name(T, "f", "once") == first
    assert _running(store) == 1


def test_each_tenant_counts_only_its_own_executions(store: ExecutionStore) -> None:
    mine = _run(store, "a")
    _run(store, "b")
    theirs = _run(store, "a", tenant=OTHER_TENANT)
    assert (_running(store), _running(store, OTHER_TENANT)) == (2, 1)
    _close(store, theirs.arn, ExecutionStatus.SUCCEEDED)
    assert (_running(store), _running(store, OTHER_TENANT)) == (2, 0)
    _close(store, mine.arn, ExecutionStatus.STOPPED)
    assert (_running(store), _running(store, OTHER_TENANT)) == (1, 0)
    assert _running(store, "999999999999") == 0  # a tenant that never started anything


def test_a_close_raced_or_replayed_moves_the_count_once(backend: Backend) -> None:
    store, other = backend.store, backend.another()
    ex = _run(store, "raced")
    _run(store, "bystander")
    mine, theirs = store.load(ex.arn).execution, other.load(ex.arn).execution
    mine.status, theirs.status = ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED
    store.commit(Commit(execution=mine))
    with pytest.raises(ConcurrentModification):
        other.commit(Commit(execution=theirs))  # computed from the version before the close
    assert _running(store) == 1
    # The loser retries from what is stored now: already closed, so nothing moves again.
    _close(other, ex.arn, ExecutionStatus.SUCCEEDED)
    _close(other, ex.arn, ExecutionStatus.SUCCEEDED)
    assert _running(store) == _running(other) == 1


def test_deleting_a_running_execution_uncounts_it_once(backend: Backend) -> None:
    store = backend.store
    closed, running = _run(store, "closed"), _run(store, "running")
    _close(store, closed.arn, ExecutionStatus.SUCCEEDED)
    assert _running(store) == 1
    store.delete(closed.arn)
    assert _running(store) == 1
    store.delete(running.arn)  # the engine deletes only closed ones; the store allows it
    store.delete(running.arn)
    assert _running(store) == 0


# -- DynamoDB only: no bucket, error translation ------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    _aws_env(monkeypatch)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_tables(client, TABLE)
        create_tables(client, TABLE)  # idempotent: `treadle dev` runs it on every start
        yield client


def test_create_tables_declares_the_named_indexes_and_ttl(aws: Any) -> None:
    table = aws.describe_table(TableName=TABLE)["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == [
        tables.PARTITION_KEY,
        tables.SORT_KEY,
    ]
    assert sorted(i["IndexName"] for i in table["GlobalSecondaryIndexes"]) == sorted(
        [
            tables.GSI_BY_FUNCTION,
            tables.GSI_BY_FUNCTION_STATUS,
            tables.GSI_DUE_TIMERS,
            tables.GSI_ACTIVE_INVOCATIONS,
            tables.GSI_BY_CODE,
        ]
    )
    ttl = aws.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": tables.TTL_ATTRIBUTE}


def test_without_a_bucket_a_value_too_big_for_an_item_is_refused(aws: Any) -> None:
    store = DynamoExecutionStore(aws, TABLE)
    small = _start(store, "fits", input_payload=_big(250_000))  # inline, under 400 KB
    assert store.get(small.arn).input_payload is not None
    with pytest.raises(PayloadTooLarge) as refused:
        _start(store, "too-big", input_payload=_big(500_000))
    assert not refused.value.retryable
    assert store.find_by_name(T, "f", "too-big") is None


def _cancelled(stubber: Stubber, *reasons: str) -> None:
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message=f"Transaction cancelled [{', '.join(reasons)}]",
        http_status_code=400,
        modeled_fields={"CancellationReasons": [{"Code": r} for r in reasons]},
    )


@pytest.mark.parametrize(
    ("reasons", "expected", "retryable"),
    [
        (("None", "ThrottlingError"), Throttled, True),
        (("ProvisionedThroughputExceeded", "None"), Throttled, True),
        (("TransactionConflict", "None"), ConcurrentModification, True),
        (("ConditionalCheckFailed", "ThrottlingError"), ConcurrentModification, True),
        (("None", "ItemCollectionSizeLimitExceeded"), PayloadTooLarge, False),
    ],
)
def test_a_cancelled_transaction_becomes_a_domain_error(
    aws: Any, reasons: tuple[str, ...], expected: type[TreadleError], retryable: bool
) -> None:
    store = DynamoExecutionStore(aws, TABLE)
    ex = _start(store, "cancelled")
    loaded = store.load(ex.arn).execution
    with Stubber(aws) as stubber:
        _cancelled(stubber, *reasons)
        with pytest.raises(expected) as raised:
            store.commit(Commit(execution=loaded, operations=[_op("s", 2, 2)]))
    assert raised.value.retryable is retryable
    assert store.get(ex.arn).version_seq == 1


def test_throttled_reads_say_retry(aws: Any) -> None:
    store = DynamoExecutionStore(aws, TABLE)
    with Stubber(aws) as stubber:
        stubber.add_client_error(
            "get_item", "ProvisionedThroughputExceededException", "slow down", 400
        )
        stubber.add_client_error("get_item", "InternalServerError", "oops", 500)
        stubber.add_client_error("get_item", "ResourceNotFoundException", "no table", 400)
        with pytest.raises(Throttled) as throttled:
            store.get("arn:x")
        with pytest.raises(TreadleError) as transient:
            store.get("arn:x")
        with pytest.raises(TreadleError) as missing:
            store.get("arn:x")
    assert throttled.value.retryable and transient.value.retryable
    assert not missing.value.retryable and not isinstance(missing.value, NotFound)


def test_an_execution_written_before_the_counter_is_counted_from_its_next_commit(
    aws: Any,
) -> None:
    store = DynamoExecutionStore(aws, TABLE)
    legacy = _run(store, "legacy")
    # As items written before the counter existed: no flag, no counter shard.
    aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"X#{legacy.arn}"}, "sk": {"S": "META"}},
        UpdateExpression="REMOVE running_counted",
    )
    for shard in aws.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"U#{T}"}},
    )["Items"]:
        aws.delete_item(TableName=TABLE, Key={"pk": shard["pk"], "sk": shard["sk"]})
    fresh = DynamoExecutionStore(aws, TABLE)  # nothing cached
    assert _running(fresh) == 0
    _change(fresh, legacy.arn, lambda loaded: _with_events(loaded, 1))  # still RUNNING
    assert _running(fresh) == 1
    _close(fresh, legacy.arn, ExecutionStatus.SUCCEEDED)
    assert _running(fresh) == 0
    # One that closes before any commit flags it is never uncounted: no negative count.
    other = _run(store, "legacy-2")
    aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"X#{other.arn}"}, "sk": {"S": "META"}},
        UpdateExpression="REMOVE running_counted",
    )
    aws.update_item(
        TableName=TABLE,
        Key=running_key(T, other.arn),
        UpdateExpression="ADD running :d",
        ExpressionAttributeValues={":d": {"N": "-1"}},
    )
    _close(DynamoExecutionStore(aws, TABLE), other.arn, ExecutionStatus.STOPPED)
    assert _running(fresh) == 0


def test_a_start_that_meets_a_transaction_conflict_is_retried(aws: Any) -> None:
    store = DynamoExecutionStore(aws, TABLE)
    with Stubber(aws) as stubber:
        # Another start of the tenant held the counter shard: cancelled whole, retried.
        _cancelled(stubber, "None", "None", "TransactionConflict", "None", "None")
        stubber.add_response("transact_write_items", {})
        _start(store, "contended")
        stubber.assert_no_pending_responses()


# -- batch creates -------------------------------------------------------------------


def _creation(name: str) -> Commit:
    ex = _execution(name)
    root = Operation(
        Id=ex.exec_id,
        Type=OperationType.EXECUTION,
        StartTimestamp=ex.start_ms,
        Status=OperationStatus.STARTED,
        ExecutionDetails=ExecutionDetails(InputPayload=ex.input_payload),
    )
    return Commit(
        execution=ex,
        operations=[StoredOperation(op=root, create_seq=1, change_seq=1)],
        events=[_event(1, "ExecutionStarted", ex.exec_id, Input={"Payload": "{}"})],
        set_timers=[Timer(ex.arn, TimerKind.INVOKE, "", 1_000)],
    )


def test_a_batch_creates_every_new_execution_and_skips_taken_names(
    store: ExecutionStore,
) -> None:
    taken = _run(store, "taken")
    commits = [_creation(f"b{i}") for i in range(5)] + [_creation("taken")]
    assert store.create_batch(commits) == [True] * 5 + [False]
    for i in range(5):
        found = store.find_by_name(T, "f", f"b{i}")
        assert found is not None and found.version_seq == 1
        assert list(store.load(found.arn).operations) == [found.exec_id]
        assert [e.EventType for e in store.events(found.arn, after_id=0, limit=10)] == [
            "ExecutionStarted"
        ]
    assert store.get(taken.arn).input_payload == taken.input_payload
    assert store.count_running(T) == 6
    assert {t.arn for t in store.due_timers(2_000, 100)} >= {c.execution.arn for c in commits[:5]}


def test_buffered_events_round_trip_in_the_execution_record(store: ExecutionStore) -> None:
    ex = _start(store, "evented")

    def buffer(loaded: Execution) -> Commit:
        loaded.event_buffer = [
            BufferedEvent(type="a", payload='{"n": 1}', sent_ms=5, expires_ms=10),
            BufferedEvent(type="b", payload=None, sent_ms=6, expires_ms=11),
        ]
        return Commit(execution=loaded)

    _change(store, ex.arn, buffer)
    for reader in (store.load(ex.arn).execution, store.get(ex.arn)):
        assert [(e.type, e.payload) for e in reader.event_buffer] == [
            ("a", '{"n": 1}'),
            ("b", None),
        ]


def test_pinned_limits_and_usage_counters_round_trip_with_the_commit_that_moves_them(
    backend: Backend,
) -> None:
    store = backend.store
    ex = _execution("limited")
    ex.limits = ExecutionLimits(max_operations=5, max_history_bytes=700, max_payload_bytes=90)
    ex.operation_count, ex.history_bytes = 1, 8
    store.create(Commit(execution=ex, events=[_event(1, "ExecutionStarted", ex.exec_id)]))

    def count(loaded: Execution) -> Commit:
        loaded.operation_count += 2
        loaded.history_bytes += 100
        commit = _with_events(loaded, 2)
        commit.operations = [_op("s1", 2, 2), _op("s2", 3, 3)]
        return commit

    _change(store, ex.arn, count)
    # Another process's store reads what was committed, through the record alone.
    for reader in (store, backend.another()):
        got = reader.load(ex.arn).execution
        assert got.limits == ex.limits
        assert (got.operation_count, got.history_bytes) == (3, 108)
        assert reader.get(ex.arn).operation_count == 3
    # A commit from a stale version is refused whole: its counts with it.
    stale = store.get(ex.arn).model_copy(update={"version_seq": 1, "operation_count": 99})
    with pytest.raises(ConcurrentModification):
        store.commit(Commit(execution=stale, operations=[_op("s3", 4, 4)]))
    got = backend.another().load(ex.arn)
    assert got.execution.operation_count == 3 and "s3" not in got.operations


# -- a redrive: a new execution and its source's link, together ------------------------


def _seeded_creation(name: str, source: Execution) -> Commit:
    commit = _creation(name)
    commit.execution.redriven_from = source.arn
    copied = _op("s1", 2, 2, status=OperationStatus.SUCCEEDED, result='"r1"')
    commit.operations.append(copied)
    commit.execution.change_seq = 2
    return commit


def _link(source: Execution, to: str) -> Commit:
    linked = source.model_copy(update={"redriven_to": [*source.redriven_to, to]})
    return Commit(execution=linked)


def test_a_linked_creation_writes_the_new_execution_and_its_sources_link_together(
    backend: Backend,
) -> None:
    store = backend.store
    source = _start(store, "source")
    new = _seeded_creation("redrive", source)
    store.create_linked(new, _link(store.load(source.arn).execution, new.execution.arn))
    for reader in (store, backend.another()):
        got = reader.get(new.execution.arn)
        assert got.redriven_from == source.arn and got.version_seq == 1
        ops = reader.load(new.execution.arn).operations
        assert list(ops) == [got.exec_id, "s1"] and ops["s1"].op.StepDetails is not None
        assert ops["s1"].op.StepDetails.Result == '"r1"'
        linked = reader.load(source.arn).execution
        assert linked.redriven_to == [new.execution.arn] and linked.version_seq == 2
    # The source keeps taking commits at its new version.
    _change(store, source.arn)
    assert backend.another().get(source.arn).version_seq == 3


def test_a_linked_creation_on_a_stale_source_or_a_taken_name_writes_nothing(
    backend: Backend,
) -> None:
    store = backend.store
    source = _start(store, "source")
    stale = store.load(source.arn).execution
    _change(backend.another(), source.arn)  # another writer moves the source
    new = _seeded_creation("redrive", source)
    with pytest.raises(ConcurrentModification):
        store.create_linked(new, _link(stale, new.execution.arn))
    assert store.find_by_name(T, "f", "redrive") is None
    _start(store, "taken")
    taken = _seeded_creation("taken", source)
    with pytest.raises(AlreadyExists):
        store.create_linked(taken, _link(store.load(source.arn).execution, "x"))
    for reader in (store, backend.another()):
        assert reader.get(source.arn).redriven_to == []
        assert reader.get(source.arn).version_seq == 2
        assert reader.get(taken.execution.arn).redriven_from is None
