"""What the processes of `treadle dev --processes N` share on disk, each with stores of
its own on the same files: the timers and leases each drives, the tenants' uids, and the
unpacked code."""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import pytest

from contract.test_execution_store import _change, _start
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.sandbox.identity import TenantIds
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.executions import SqliteExecutionStore
from treadle.domain.errors import ConcurrentModification
from treadle.domain.models import Execution
from treadle.domain.partition import Partition, owner
from treadle.domain.ports import Commit


@pytest.fixture
def connect(tmp_path: Path) -> Iterator[Callable[[], Database]]:
    """Connections to one `treadle.db`, each as another process would open it."""
    opened: list[Database] = []

    def open_one() -> Database:
        opened.append(Database(tmp_path / "treadle.db"))
        return opened[-1]

    yield open_one
    for db in opened:
        db.close()


def test_each_process_reads_only_the_timers_and_leases_of_its_own_executions(
    connect: Callable[[], Database],
) -> None:
    db = connect()
    whole = SqliteExecutionStore(db)
    parts = [SqliteExecutionStore(connect(), partition=Partition(i, 2)) for i in (0, 1)]
    made = [_start(whole, f"e{i}", invoke=True, start_ms=100 + i) for i in range(40)]
    for ex in made[::3]:
        _change(whole, ex.arn, _leased)
    by_owner = {i: [ex.arn for ex in made if owner(ex.arn, 2) == i] for i in (0, 1)}
    assert by_owner[0] and by_owner[1]
    for i, store in enumerate(parts):
        due = store.due_timers(10**12, 100)
        assert [t.arn for t in due] == by_owner[i]
        assert store.next_due_ms() == min(t.due_ms for t in due)
        assert set(store.active_invocations()) == {
            ex.arn for ex in made[::3] if owner(ex.arn, 2) == i
        }
    assert len(whole.due_timers(10**12, 100)) == 40


def _leased(loaded: Execution) -> Commit:
    loaded.invocation_active = True
    return Commit(execution=loaded)


def test_a_backlog_of_another_process_never_fills_this_ones_read(
    connect: Callable[[], Database],
) -> None:
    db = connect()
    whole = SqliteExecutionStore(db)
    mine = SqliteExecutionStore(db, partition=Partition(0, 2))
    made = [_start(whole, f"b{i}", invoke=True, start_ms=100 + i) for i in range(60)]
    theirs = [ex for ex in made if owner(ex.arn, 2) == 1]
    last_mine = [ex for ex in made if owner(ex.arn, 2) == 0][-1]
    # Every row of the other process is due before this one's last row.
    assert all(ex.start_ms < last_mine.start_ms for ex in theirs[:20])
    due = mine.due_timers(10**12, 5)
    assert len(due) == 5 and all(owner(t.arn, 2) == 0 for t in due)


def test_processes_give_a_tenant_one_uid_and_two_tenants_two(tmp_path: Path) -> None:
    path = tmp_path / "tenant-ids.json"
    first, second = TenantIds(path), TenantIds(path)
    a = first.uid("111111111111")
    assert second.uid("111111111111") == a  # read from the file, not allocated again
    b = second.uid("222222222222")
    # `first` cached the file before `second` wrote: it must not hand out b again.
    c = first.uid("333333333333")
    assert len({a, b, c}) == 3
    assert first.uid("222222222222") == b
    results: list[int] = []
    lock = threading.Lock()

    def allocate(ids: TenantIds, tenant: str) -> None:
        uid = ids.uid(tenant)
        with lock:
            results.append(uid)

    stores = [TenantIds(path) for _ in range(4)]
    threads = [
        threading.Thread(target=allocate, args=(stores[n % 4], f"44444444444{n}")) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 8 and not {a, b, c} & set(results)


def _zip() -> bytes:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    return buf.getvalue()


def test_a_process_keeps_the_tree_another_unpacked_first_and_only_dead_leftovers_go(
    tmp_path: Path,
) -> None:
    first = LocalCodeStore(tmp_path / "code")
    key = first.put(_zip())
    second = LocalCodeStore(tmp_path / "code", clean=False)
    home = tmp_path / "code" / "unpacked" / "123456789012"
    home.mkdir(parents=True)
    busy = home / f".tmp-{os.getppid()}-inflight"  # a live process unpacking right now
    busy.mkdir()
    dead = home / ".tmp-999999999-crashed"  # no such pid: left by a crash
    dead.mkdir()
    target = first.unpacked(key, "123456789012")
    assert busy.exists() and not dead.exists()
    # `second` looked before `first` renamed its tree into place, and renames second:
    # it keeps the tree that is there instead of failing the invocation.
    second._unpack(key, home, target, None)
    assert (target / "handler.py").read_text().startswith("def handler")
    assert sorted(p.name for p in home.iterdir()) == sorted([busy.name, target.name])


def test_a_process_other_than_the_first_leaves_uploads_under_way_alone(tmp_path: Path) -> None:
    LocalCodeStore(tmp_path / "code")
    uploading = tmp_path / "code" / "zips" / ".tmp-upload"
    uploading.write_bytes(b"half")
    LocalCodeStore(tmp_path / "code", clean=False)
    assert uploading.exists()
    LocalCodeStore(tmp_path / "code")  # the first, starting: an earlier run's leftover
    assert not uploading.exists()


def test_a_process_never_computes_a_change_of_another_ones_execution_on_an_old_copy(
    connect: Callable[[], Database],
) -> None:
    db = connect()
    whole = SqliteExecutionStore(db)
    made = [_start(whole, f"s{i}") for i in range(8)]
    theirs = next(ex for ex in made if owner(ex.arn, 2) == 1)
    mine = next(ex for ex in made if owner(ex.arn, 2) == 0)
    here = SqliteExecutionStore(connect(), partition=Partition(0, 2))
    there = SqliteExecutionStore(connect(), partition=Partition(1, 2))
    for ex in (theirs, mine):
        _change(here, ex.arn)  # `here` has both in its cache now
        _change(there, ex.arn)  # and both move on in the other process
    # Another's: always the current copy.
    assert here.load(theirs.arn).execution.version_seq == 3
    # Its own may come from its cache: a write computed on an old copy is refused on
    # its version, and the next load is the current one.
    with pytest.raises(ConcurrentModification):
        here.commit(Commit(execution=here.load(mine.arn).execution))
    assert here.load(mine.arn).execution.version_seq == 3
