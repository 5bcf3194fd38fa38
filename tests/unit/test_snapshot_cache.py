"""The snapshot cache both execution stores share: newest wins, stale entries drop out."""

from __future__ import annotations

from treadle.adapters.snapshot_cache import SnapshotCache
from treadle.domain.models import Execution, ExecutionStatus, Operation
from treadle.domain.ports import Commit, Snapshot, StoredOperation


def _execution(name: str = "n", version: int = 1) -> Execution:
    return Execution(
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/{name}/i",
        tenant="123456789012",
        function_name="f",
        version="$LATEST",
        name=name,
        exec_id="i",
        status=ExecutionStatus.RUNNING,
        input_payload=None,
        input_hash="h",
        start_ms=0,
        execution_timeout_s=60,
        retention_days=1,
        version_seq=version,
    )


def _snapshot(ex: Execution, *op_ids: str) -> Snapshot:
    ops = {
        i: StoredOperation(
            op=Operation.model_validate(
                {"Id": i, "Type": "STEP", "Status": "STARTED", "StartTimestamp": 0}
            ),
            create_seq=n,
            change_seq=n,
        )
        for n, i in enumerate(op_ids)
    }
    return Snapshot(execution=ex, operations=ops)


def test_an_older_version_never_replaces_a_newer_one() -> None:
    cache: SnapshotCache[Snapshot] = SnapshotCache(10)
    newer = _snapshot(_execution(version=3))
    cache.remember(newer)
    cache.remember(_snapshot(_execution(version=2)))
    assert cache.get(newer.execution.arn) is newer
    newest = _snapshot(_execution(version=4))
    cache.remember(newest)
    assert cache.get(newer.execution.arn) is newest


def test_the_least_recently_used_is_evicted() -> None:
    cache: SnapshotCache[Snapshot] = SnapshotCache(2)
    a, b, c = (_snapshot(_execution(n)) for n in "abc")
    cache.remember(a)
    cache.remember(b)
    assert cache.get(a.execution.arn) is a  # a is now the most recently used
    cache.remember(c)
    assert cache.get(b.execution.arn) is None
    assert cache.get(a.execution.arn) is a and cache.get(c.execution.arn) is c


def test_advance_folds_a_commit_into_the_version_it_was_computed_from() -> None:
    cache: SnapshotCache[Snapshot] = SnapshotCache(10)
    cache.remember(_snapshot(_execution(version=1), "x"))
    changed = _snapshot(_execution(version=2), "y").operations["y"]
    commit = Commit(execution=_execution(version=2), operations=[changed])
    cache.advance(commit, lambda ops: Snapshot(execution=commit.execution, operations=ops))
    cached = cache.get(commit.execution.arn)
    assert cached is not None and cached.execution.version_seq == 2
    assert sorted(cached.operations) == ["x", "y"]


def test_advance_drops_an_entry_at_another_version() -> None:
    cache: SnapshotCache[Snapshot] = SnapshotCache(10)
    cache.remember(_snapshot(_execution(version=1), "x"))
    commit = Commit(execution=_execution(version=3))  # computed from 2: the entry is stale
    cache.advance(commit, lambda ops: Snapshot(execution=commit.execution, operations=ops))
    assert cache.get(commit.execution.arn) is None


def test_a_commit_that_closes_the_execution_takes_it_out_of_the_cache() -> None:
    cache: SnapshotCache[Snapshot] = SnapshotCache(10)
    cache.remember(_snapshot(_execution(version=1), "x"))
    closed = _execution(version=2).model_copy(update={"status": ExecutionStatus.SUCCEEDED})
    commit = Commit(execution=closed)
    cache.advance(commit, lambda ops: Snapshot(execution=commit.execution, operations=ops))
    assert cache.get(closed.arn) is None
