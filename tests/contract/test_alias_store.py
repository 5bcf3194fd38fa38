"""One contract for every AliasStore adapter (the FunctionStore adapters: see the port).

The adapters and the fixture are those of `test_function_store` (SQLite; DynamoDB on
moto, a fresh account per test).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_function_store import (
    LATEST,
    OTHER,
    REGION,
    STORES,
    T,
    _aws_env,
    _changed,
    _fn,
)

from treadle.domain.errors import AlreadyExists, Conflict, NotFound, PreconditionFailed
from treadle.domain.ports import Alias


@pytest.fixture(params=sorted(STORES))
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    _aws_env(monkeypatch)
    instance, cleanup = STORES[request.param](tmp_path)
    yield instance
    cleanup()


def _alias(name: str = "prod", version: str = "1", fn: str = "fn", tenant: str = T) -> Alias:
    return Alias(
        tenant=tenant,
        function_name=fn,
        name=name,
        function_arn=f"arn:aws:lambda:{REGION}:{tenant}:function:{fn}",
        function_version=version,
        description="",
        revision_id=uuid.uuid4().hex,
    )


def _with_versions(store: Any, count: int, name: str = "fn", tenant: str = T) -> None:
    store.put_latest(_fn(name, tenant), create=True)
    for i in range(count):
        if i:
            _changed(store, name, tenant, timeout_s=10 + i)
        store.publish(tenant, name, None)


def test_an_alias_is_created_read_and_named_by_its_arn(store: Any) -> None:
    _with_versions(store, 1)
    alias = _alias()
    store.create_alias(alias)
    assert store.get_alias(T, "fn", "prod") == alias
    assert alias.alias_arn == f"arn:aws:lambda:{REGION}:{T}:function:fn:prod"


def test_an_alias_may_point_to_latest(store: Any) -> None:
    _with_versions(store, 0)
    store.create_alias(_alias("dev", LATEST))
    assert store.get_alias(T, "fn", "dev").function_version == LATEST


def test_creating_an_existing_alias_is_refused_and_changes_nothing(store: Any) -> None:
    _with_versions(store, 2)
    first = _alias(version="1")
    store.create_alias(first)
    with pytest.raises(AlreadyExists):
        store.create_alias(_alias(version="2"))
    assert store.get_alias(T, "fn", "prod") == first


def test_an_alias_of_a_missing_function_or_version_is_refused(store: Any) -> None:
    with pytest.raises(NotFound):
        store.create_alias(_alias())
    _with_versions(store, 1)
    with pytest.raises(NotFound):
        store.create_alias(_alias(version="2"))
    with pytest.raises(NotFound):
        store.get_alias(T, "fn", "prod")


def test_a_missing_alias_is_not_found_on_every_operation(store: Any) -> None:
    _with_versions(store, 1)
    with pytest.raises(NotFound):
        store.get_alias(T, "fn", "nope")
    with pytest.raises(NotFound):
        store.update_alias(_alias("nope"), "whatever")
    with pytest.raises(NotFound):
        store.delete_alias(T, "fn", "nope")


def test_update_repoints_an_alias_when_its_revision_is_the_expected_one(store: Any) -> None:
    _with_versions(store, 2)
    alias = _alias(version="1")
    store.create_alias(alias)
    moved = alias.model_copy(update={"function_version": "2", "revision_id": "r2"})
    store.update_alias(moved, alias.revision_id)
    assert store.get_alias(T, "fn", "prod") == moved
    stale = alias.model_copy(update={"function_version": LATEST, "revision_id": "r3"})
    with pytest.raises(PreconditionFailed):
        store.update_alias(stale, alias.revision_id)
    assert store.get_alias(T, "fn", "prod") == moved


def test_update_to_a_missing_version_is_refused(store: Any) -> None:
    _with_versions(store, 1)
    alias = _alias(version="1")
    store.create_alias(alias)
    with pytest.raises(NotFound):
        store.update_alias(alias.model_copy(update={"function_version": "7"}), alias.revision_id)
    assert store.get_alias(T, "fn", "prod") == alias


def test_delete_removes_only_that_alias(store: Any) -> None:
    _with_versions(store, 1)
    store.create_alias(_alias("a"))
    store.create_alias(_alias("b"))
    store.delete_alias(T, "fn", "a")
    with pytest.raises(NotFound):
        store.get_alias(T, "fn", "a")
    assert store.get_alias(T, "fn", "b").name == "b"


def test_list_pages_in_name_order_and_filters_by_version(store: Any) -> None:
    with pytest.raises(NotFound):
        store.list_aliases(T, "fn", None, None, 10)
    _with_versions(store, 2)
    names = [f"a-{i:02d}" for i in range(7)]
    for i, name in enumerate(reversed(names)):
        store.create_alias(_alias(name, "1" if i % 2 else "2"))
    seen: list[str] = []
    marker: str | None = None
    while True:
        page, marker = store.list_aliases(T, "fn", None, marker, 3)
        assert len(page) <= 3
        seen += [a.name for a in page]
        if marker is None:
            break
    assert seen == names
    ones, none_left = store.list_aliases(T, "fn", "1", None, 100)
    assert none_left is None and ones and all(a.function_version == "1" for a in ones)
    twos = store.list_aliases(T, "fn", "2", None, 100)[0]
    assert sorted(a.name for a in ones + twos) == names


def test_aliases_do_not_show_among_versions(store: Any) -> None:
    _with_versions(store, 2)
    store.create_alias(_alias("aaa"))
    versions, marker = store.list_versions(T, "fn", None, 10)
    assert [v.version for v in versions] == [LATEST, "1", "2"] and marker is None
    first, marker = store.list_versions(T, "fn", None, 1)
    rest, _ = store.list_versions(T, "fn", marker, 10)
    assert [v.version for v in first + rest] == [LATEST, "1", "2"]


def test_a_version_an_alias_points_to_cannot_be_deleted(store: Any) -> None:
    _with_versions(store, 2)
    store.create_alias(_alias("prod", "1"))
    with pytest.raises(Conflict, match="prod"):
        store.delete(T, "fn", "1")
    assert store.get(T, "fn", "1").version == "1"
    store.delete(T, "fn", "2")  # no alias names it
    with pytest.raises(NotFound):
        store.get(T, "fn", "2")
    store.delete_alias(T, "fn", "prod")
    store.delete(T, "fn", "1")


def test_deleting_a_function_deletes_its_aliases(store: Any) -> None:
    _with_versions(store, 1)
    store.create_alias(_alias("prod"))
    store.delete(T, "fn")
    _with_versions(store, 1)  # the same name again: no alias survives
    with pytest.raises(NotFound):
        store.get_alias(T, "fn", "prod")
    assert store.list_aliases(T, "fn", None, None, 10) == ([], None)


def test_another_tenant_neither_sees_nor_changes_an_alias(store: Any) -> None:
    _with_versions(store, 1)
    alias = _alias()
    store.create_alias(alias)
    _with_versions(store, 1, tenant=OTHER)
    with pytest.raises(NotFound):
        store.get_alias(OTHER, "fn", "prod")
    assert store.list_aliases(OTHER, "fn", None, None, 10) == ([], None)
    with pytest.raises(NotFound):
        store.delete_alias(OTHER, "fn", "prod")
    with pytest.raises(NotFound):
        store.update_alias(_alias(tenant=OTHER), alias.revision_id)
    assert store.get_alias(T, "fn", "prod") == alias


def test_replacing_latest_on_a_stale_revision_is_refused(store: Any) -> None:
    fn = _fn()
    store.put_latest(fn, create=True)
    newer = fn.model_copy(update={"timeout_s": 9, "revision_id": "r2"})
    store.put_latest(newer, create=False, expected_revision=fn.revision_id)
    assert store.get(T, "fn") == newer
    with pytest.raises(PreconditionFailed):
        store.put_latest(
            fn.model_copy(update={"revision_id": "r3"}),
            create=False,
            expected_revision=fn.revision_id,
        )
    assert store.get(T, "fn") == newer
    with pytest.raises(NotFound):
        store.put_latest(_fn("ghost"), create=False, expected_revision="x")
