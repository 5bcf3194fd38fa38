"""The function cache of a sole writer (one server process): no read of the file's
generation per look-up, and still never an old version served after a write.

The shared contract (`tests/contract/test_function_store.py`, "sqlite-sole-writer")
runs every behaviour of the store in this mode; these tests hold what is particular to
it: the reads it saves, and the race the generation used to cover.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.domain.models import DurableConfig
from treadle.domain.ports import FunctionVersion

T = "123456789012"


def _fn(handler: str) -> FunctionVersion:
    return FunctionVersion(
        tenant=T,
        function_name="f",
        version="$LATEST",
        function_arn=f"arn:aws:lambda:us-east-1:{T}:function:f",
        handler=handler,
        durable_config=DurableConfig(ExecutionTimeout=60),
        code_sha256="x",
        code_size=1,
        code_key="k",
        last_modified_ms=0,
        revision_id=handler,
    )


class _SpiedReads:
    """The store's database, counting reads and running `after_read` once after one."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.reads = 0
        self.after_read: Any = None

    @contextmanager
    def read(self) -> Iterator[Any]:
        self.reads += 1
        with self.db.read() as conn:
            yield conn
        hook, self.after_read = self.after_read, None
        if hook is not None:
            hook()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def _store(tmp_path: Path) -> tuple[SqliteFunctionStore, _SpiedReads]:
    spied = _SpiedReads(Database(tmp_path / "t.db"))
    return SqliteFunctionStore(spied, sole_writer=True), spied  # type: ignore[arg-type]


def test_a_cached_version_is_served_without_reading_the_file(tmp_path: Path) -> None:
    store, spied = _store(tmp_path)
    store.put_latest(_fn("a.h"), create=True)
    assert store.get(T, "f").handler == "a.h"
    before = spied.reads
    for _ in range(10):
        assert store.get(T, "f").handler == "a.h"
    assert spied.reads == before


def test_an_update_is_served_at_the_next_look(tmp_path: Path) -> None:
    store, _ = _store(tmp_path)
    store.put_latest(_fn("a.h"), create=True)
    assert store.get(T, "f").handler == "a.h"
    store.put_latest(_fn("b.h"), create=False)
    assert store.get(T, "f").handler == "b.h"
    store.publish(T, "f", None)
    assert store.get(T, "f", "1").handler == "b.h"
    store.delete(T, "f", "1")
    assert [v.version for v in store.list_versions(T, "f", None, 10)[0]] == ["$LATEST"]


def test_a_look_racing_an_update_does_not_cache_the_row_it_read_before(
    tmp_path: Path,
) -> None:
    store, spied = _store(tmp_path)
    store.put_latest(_fn("a.h"), create=True)
    # The update commits between the look's read of the old row and its caching.
    spied.after_read = lambda: store.put_latest(_fn("b.h"), create=False)
    assert store.get(T, "f").handler == "a.h"  # what it read, before the update
    assert store.get(T, "f").handler == "b.h"  # not the old row, cached
