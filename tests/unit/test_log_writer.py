"""The SQLite log store writes appended lines behind (`adapters/sqlite/logs._Writer`):
an append returns before its commit, several invocations' lines share one commit, a
read sees every line appended before it, and a clean close writes what is pending."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from treadle.adapters.sqlite import logs as logs_module
from treadle.adapters.sqlite.logs import SqliteLogStore

T = "123456789012"
GROUP = "/aws/lambda/fn"


def _on_disk(path: Path) -> list[str]:
    """What another process would read: the file, not this store's memory."""
    conn = sqlite3.connect(path)
    try:
        return [m for (m,) in conn.execute("SELECT message FROM log_events ORDER BY seq")]
    finally:
        conn.close()


def _messages(store: SqliteLogStore) -> list[str]:
    result = store.filter(
        T, GROUP, start_ms=None, end_ms=None, pattern=None, stream_names=None,
        stream_prefix=None, limit=10_000, next_token=None,
    )  # fmt: skip
    return [str(e["message"]) for e in result.events]


def test_an_append_returns_before_its_commit_and_the_writer_commits_it_soon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "FLUSH_AFTER_S", 0.2)
    path = tmp_path / "logs.db"
    store = SqliteLogStore(path)
    store.append(T, GROUP, "s", [(1000, "hello")])
    assert _on_disk(path) == []  # handed over, not yet written
    deadline = time.monotonic() + 5
    while not _on_disk(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _on_disk(path) == ["hello"]
    store.close()


def test_a_read_sees_every_line_appended_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "FLUSH_AFTER_S", 60)  # the writer never gets to it
    store = SqliteLogStore(tmp_path / "logs.db")
    store.append(T, GROUP, "s", [(1000, "one"), (1001, "two")])
    assert _messages(store) == ["one", "two"]
    assert store.log_group_exists(T, GROUP)
    store.close()


def test_close_writes_what_is_pending_and_later_appends_go_straight_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "FLUSH_AFTER_S", 60)
    path = tmp_path / "logs.db"
    store = SqliteLogStore(path)
    store.append(T, GROUP, "s", [(1000, "before close")])
    store._writer.close()
    assert _on_disk(path) == ["before close"]
    store.append(T, GROUP, "s", [(1001, "after close")])
    assert _on_disk(path) == ["before close", "after close"]
    store.close()


def test_lines_of_concurrent_invocations_all_land_in_few_commits_each_in_its_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "FLUSH_AFTER_S", 0.05)
    path = tmp_path / "logs.db"
    store = SqliteLogStore(path)
    commits: list[int] = []
    write = store._writer._write
    monkeypatch.setattr(
        store._writer, "_write", lambda rows: (commits.append(len(rows)), write(rows))
    )
    gate = threading.Barrier(8)

    def invocation(i: int) -> None:
        gate.wait()
        for j in range(20):
            store.append(T, GROUP, f"s{i}", [(1000 + j, f"{i}:{j}:a"), (1000 + j, f"{i}:{j}:b")])

    threads = [threading.Thread(target=invocation, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    lines = _on_disk(path)
    assert len(lines) == 8 * 20 * 2
    for i in range(8):
        mine = [line for line in lines if line.startswith(f"{i}:")]
        assert mine == [f"{i}:{j}:{k}" for j in range(20) for k in "ab"]
    assert sum(commits) == 320 and len(commits) < 160  # batched: fewer than one per append


def test_too_many_pending_lines_are_written_by_the_append_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "FLUSH_AFTER_S", 60)
    monkeypatch.setattr(logs_module, "MAX_PENDING", 3)
    path = tmp_path / "logs.db"
    store = SqliteLogStore(path)
    store.append(T, GROUP, "s", [(1000, "a"), (1001, "b")])
    assert _on_disk(path) == []
    store.append(T, GROUP, "s", [(1002, "c")])
    assert _on_disk(path) == ["a", "b", "c"]
    store.close()
