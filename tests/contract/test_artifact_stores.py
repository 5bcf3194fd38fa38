"""One contract for every ObjectStore and RefStore adapter of the artifact repositories.

Adding an adapter is one entry in OBJECT_STORES / REF_STORES: a factory taking a fresh
temporary directory and returning (store, cleanup). The S3 and DynamoDB adapters run
against moto (`mock_aws`, a fresh account per test).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from treadle.adapters.aws import create_tables, tables
from treadle.adapters.aws.dynamodb_refs import (
    DELETING,
    MAX_REFS_PER_SWAP,
    DynamoRefStore,
    repo_pk,
)
from treadle.adapters.aws.items import key as item_key
from treadle.adapters.aws.s3_objects import S3ObjectStore
from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.artifacts.ports import (
    MAX_INITIAL_REFS,
    ZERO_SHA,
    InvalidKey,
    ObjectNotFound,
    ObjectStore,
    RefConflict,
    RefStore,
    RefUpdate,
    RepoAlreadyExists,
    RepoNotFound,
)
from treadle.domain.errors import (
    AlreadyExists,
    Conflict,
    InvalidParameter,
    NotFound,
    PayloadTooLarge,
)

Factory = Callable[[Path], tuple[Any, Callable[[], None]]]


REGION = "us-east-1"
TABLE = "treadle-test"
BUCKET = "treadle-test-artifacts"


def _sqlite_refs(tmp: Path) -> tuple[Any, Callable[[], None]]:
    store = SqliteRefStore(tmp / "refs.sqlite")
    return store, store.close


def _moto() -> Callable[[], None]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    return lambda: mock.__exit__(None, None, None)


def _s3_objects(_tmp: Path) -> tuple[Any, Callable[[], None]]:
    stop = _moto()
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    # Something outside the store's prefix that it must never list nor touch.
    s3.put_object(Bucket=BUCKET, Key="executions/x", Body=b"not a pack")
    return S3ObjectStore(s3, BUCKET), stop


def _dynamodb_refs(_tmp: Path) -> tuple[Any, Callable[[], None]]:
    stop = _moto()
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    create_tables(dynamodb, TABLE)
    return DynamoRefStore(dynamodb, TABLE), stop


OBJECT_STORES: dict[str, Factory] = {
    "local": lambda tmp: (LocalObjectStore(tmp / "objects"), lambda: None),
    "s3": _s3_objects,
}
REF_STORES: dict[str, Factory] = {
    "sqlite": _sqlite_refs,
    "dynamodb": _dynamodb_refs,
}


def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach a real account or an endpoint configured in the environment.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # moto applies a request without isolation from concurrent ones (a failed
    # transaction restores a copy of the table taken before it began, undoing what
    # other threads wrote meanwhile). DynamoDB and S3 apply each request atomically,
    # so serialize moto's requests: the adapters' own interleavings, between requests,
    # are what the concurrency tests below exercise.
    lock = threading.RLock()
    process = BotocoreStubber.process_request

    def serialized(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return process(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", serialized)


@pytest.fixture(params=sorted(OBJECT_STORES))
def objects(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ObjectStore]:
    _aws_env(monkeypatch)
    store, cleanup = OBJECT_STORES[request.param](tmp_path)
    yield store
    cleanup()


@pytest.fixture(params=sorted(REF_STORES))
def refs(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RefStore]:
    _aws_env(monkeypatch)
    store, cleanup = REF_STORES[request.param](tmp_path)
    yield store
    cleanup()


T = "123456789012"
A = b"a" * 40
B = b"b" * 40
C = b"c" * 40
MAIN = b"refs/heads/main"
DEV = b"refs/heads/dev"


# -- ObjectStore ---------------------------------------------------------------------


def test_put_get_exists_overwrite(objects: ObjectStore) -> None:
    key = f"tenants/{T}/repos/r/packs/abc.pack"
    assert not objects.exists(key)
    with pytest.raises(ObjectNotFound):
        objects.get(key)
    objects.put(key, b"\x00binary\xff")
    assert objects.exists(key)
    assert objects.get(key) == b"\x00binary\xff"
    objects.put(key, b"")
    assert objects.get(key) == b""


def test_list_by_prefix_sorted(objects: ObjectStore) -> None:
    keys = [
        "tenants/t1/repos/r/packs/b.idx",
        "tenants/t1/repos/r/packs/a.pack",
        "tenants/t1/repos/r2/packs/c.pack",
        "tenants/t2/repos/r/packs/d.pack",
    ]
    for key in keys:
        objects.put(key, key.encode())
    assert objects.list("tenants/t1/repos/r/") == sorted(keys[:2])
    assert objects.list("tenants/t1/repos/r") == sorted(keys[:3])  # a plain string prefix
    assert objects.list("tenants/t1/repos/r/packs/a") == [keys[1]]
    assert objects.list("tenants/") == sorted(keys)
    assert objects.list("tenants/t3/") == []


def test_list_info_gives_each_object_its_size_and_write_time(objects: ObjectStore) -> None:
    before_ms = int(time.time() * 1000) - 5_000  # S3 keeps whole seconds
    objects.put("tenants/t1/repos/r/packs/a.pack", b"12345")
    objects.put("tenants/t1/repos/r/packs/a.idx", b"")
    objects.put("tenants/t1/repos/q/packs/b.pack", b"x")
    found = objects.list_info("tenants/t1/repos/r/")
    assert [(i.key, i.size) for i in found] == [
        ("tenants/t1/repos/r/packs/a.idx", 0),
        ("tenants/t1/repos/r/packs/a.pack", 5),
    ]
    after_ms = int(time.time() * 1000) + 5_000
    assert all(before_ms <= i.modified_ms <= after_ms for i in found)
    assert objects.list_info("tenants/t9/") == []


def test_delete_is_idempotent(objects: ObjectStore) -> None:
    objects.put("x/y/z", b"1")
    objects.put("x/w", b"2")
    objects.delete("x/y/z")
    objects.delete("x/y/z")
    assert not objects.exists("x/y/z")
    assert objects.list("x/") == ["x/w"]


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/", "a\\b", "a\x00"])
def test_invalid_keys_are_refused(objects: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        objects.put(key, b"x")


@pytest.mark.parametrize("prefix", ["/abs", "a/../b", "..", "a\\b", "a\x00"])
def test_invalid_prefixes_are_refused(objects: ObjectStore, prefix: str) -> None:
    # A domain error, not a bare ValueError: the API maps it like any refused request.
    with pytest.raises(InvalidParameter):
        objects.list(prefix)


def test_concurrent_puts_leave_one_whole_value(objects: ObjectStore) -> None:
    values = [bytes([i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=objects.put, args=("k/v", v)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert objects.get("k/v") in values
    assert objects.list("k/") == ["k/v"]  # no temporary file is ever listed


# -- RefStore: repositories ----------------------------------------------------------


def test_repo_lifecycle(refs: RefStore) -> None:
    assert not refs.repo_exists(T, "r")
    refs.create_repo(T, "r")
    assert refs.repo_exists(T, "r")
    assert refs.get_refs(T, "r") == {}
    with pytest.raises(RepoAlreadyExists) as exc:
        refs.create_repo(T, "r")
    assert isinstance(exc.value, AlreadyExists)
    refs.compare_and_swap(T, "r", [RefUpdate(MAIN, ZERO_SHA, A)])
    refs.delete_repo(T, "r")
    assert not refs.repo_exists(T, "r")
    with pytest.raises(RepoNotFound) as missing:
        refs.get_refs(T, "r")
    assert isinstance(missing.value, NotFound)
    with pytest.raises(RepoNotFound):
        refs.delete_repo(T, "r")
    with pytest.raises(RepoNotFound):
        refs.compare_and_swap(T, "r", [RefUpdate(MAIN, ZERO_SHA, A)])
    refs.create_repo(T, "r")
    assert refs.get_refs(T, "r") == {}  # a re-created repository starts empty


def test_list_repos_pages_in_name_order_per_tenant(refs: RefStore) -> None:
    names = [f"repo-{i:02d}" for i in range(25)]
    for name in reversed(names):
        refs.create_repo(T, name)
    refs.create_repo("other", "zzz")
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = refs.list_repos(T, limit=10, after=after)
        seen += page.names
        pages += 1
        if page.next_marker is None:
            break
        after = page.next_marker
    assert seen == names and pages == 3
    exact = refs.list_repos(T, limit=25)
    assert exact.names == names and exact.next_marker is None
    assert refs.list_repos("other").names == ["zzz"]
    assert refs.list_repos("nobody").names == []


def test_a_repository_is_created_with_its_initial_refs_at_once(refs: RefStore) -> None:
    initial = {MAIN: A, DEV: B, b"HEAD": b"ref: refs/heads/dev"}
    refs.create_repo(T, "fork", initial)
    assert refs.get_refs(T, "fork") == initial
    # A taken name leaves the existing repository's refs as they were.
    with pytest.raises(RepoAlreadyExists):
        refs.create_repo(T, "fork", {MAIN: B})
    assert refs.get_refs(T, "fork") == initial
    refs.compare_and_swap(T, "fork", [RefUpdate(MAIN, A, B)])
    assert refs.get_refs(T, "fork")[MAIN] == B


def test_initial_refs_beyond_the_limit_or_empty_are_refused_and_create_nothing(
    refs: RefStore,
) -> None:
    many = {f"refs/heads/b{i}".encode(): A for i in range(MAX_INITIAL_REFS + 1)}
    with pytest.raises(PayloadTooLarge):
        refs.create_repo(T, "big", many)
    with pytest.raises(InvalidParameter):
        refs.create_repo(T, "zero", {MAIN: ZERO_SHA})
    assert not refs.repo_exists(T, "big") and not refs.repo_exists(T, "zero")
    del many[b"refs/heads/b0"]
    refs.create_repo(T, "big", many)
    assert len(refs.get_refs(T, "big")) == MAX_INITIAL_REFS


# -- RefStore: compare-and-swap ------------------------------------------------------


def test_cas_create_update_delete(refs: RefStore) -> None:
    refs.create_repo(T, "r")
    refs.compare_and_swap(T, "r", [RefUpdate(MAIN, ZERO_SHA, A)])
    refs.compare_and_swap(T, "r", [RefUpdate(MAIN, A, B), RefUpdate(DEV, ZERO_SHA, A)])
    assert refs.get_refs(T, "r") == {MAIN: B, DEV: A}
    refs.compare_and_swap(T, "r", [RefUpdate(DEV, A, ZERO_SHA)])
    assert refs.get_refs(T, "r") == {MAIN: B}
    symref = b"ref: refs/heads/main"  # values are opaque bytes
    refs.compare_and_swap(T, "r", [RefUpdate(b"HEAD", b"0" * 64, symref)])
    assert refs.get_refs(T, "r")[b"HEAD"] == symref


@pytest.mark.parametrize(
    ("update", "actual"),
    [
        (RefUpdate(MAIN, B, C), A),  # wrong old value
        (RefUpdate(MAIN, ZERO_SHA, C), A),  # create, but it exists
        (RefUpdate(DEV, A, C), None),  # update, but it does not exist
        (RefUpdate(DEV, A, ZERO_SHA), None),  # delete, but it does not exist
    ],
)
def test_cas_conflict_names_the_ref_and_changes_nothing(
    refs: RefStore, update: RefUpdate, actual: bytes | None
) -> None:
    refs.create_repo(T, "r")
    refs.compare_and_swap(T, "r", [RefUpdate(MAIN, ZERO_SHA, A)])
    before = refs.get_refs(T, "r")
    tag = RefUpdate(b"refs/tags/v1", ZERO_SHA, B)  # valid on its own: must not apply
    with pytest.raises(RefConflict) as exc:
        refs.compare_and_swap(T, "r", [tag, update])
    assert isinstance(exc.value, Conflict)
    assert exc.value.ref == update.ref and exc.value.actual == actual
    assert update.ref.decode() in exc.value.message
    assert refs.get_refs(T, "r") == before


def test_cas_refuses_malformed_batches(refs: RefStore) -> None:
    refs.create_repo(T, "r")
    for batch in (
        [],
        [RefUpdate(MAIN, ZERO_SHA, A), RefUpdate(MAIN, ZERO_SHA, B)],
        [RefUpdate(b"", ZERO_SHA, A)],
        [RefUpdate(MAIN, b"", A)],
    ):
        with pytest.raises(InvalidParameter):
            refs.compare_and_swap(T, "r", batch)
    assert refs.get_refs(T, "r") == {}


def test_repositories_are_counted_by_their_creates_and_deletes(refs: RefStore) -> None:
    assert refs.count_repos(T) == 0
    for name in ("a", "b", "c"):
        refs.create_repo(T, name)
    with pytest.raises(RepoAlreadyExists):
        refs.create_repo(T, "a")  # refused: counts nothing
    refs.create_repo("210987654321", "a")
    refs.delete_repo(T, "b")
    with pytest.raises(RepoNotFound):
        refs.delete_repo(T, "b")  # a second delete: nothing to uncount
    assert (refs.count_repos(T), refs.count_repos("210987654321")) == (2, 1)
    threads = [threading.Thread(target=refs.create_repo, args=(T, f"t{i}")) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refs.count_repos(T) == len(refs.list_repos(T, limit=100).names) == 10


def test_repository_bytes_move_by_what_is_added_and_removed(refs: RefStore) -> None:
    assert refs.repo_bytes(T) == 0
    refs.add_repo_bytes(T, 1000)
    refs.add_repo_bytes(T, 500)
    refs.add_repo_bytes("210987654321", 7)
    refs.add_repo_bytes(T, -300)
    assert (refs.repo_bytes(T), refs.repo_bytes("210987654321")) == (1200, 7)
    refs.add_repo_bytes(T, -5000)  # more removed than counted (a coarse count)
    assert refs.repo_bytes(T) == 0
    threads = [
        threading.Thread(target=refs.add_repo_bytes, args=("333333333333", 10)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refs.repo_bytes("333333333333") == 80


def test_list_repos_refuses_a_limit_below_one(refs: RefStore) -> None:
    refs.create_repo(T, "r")
    with pytest.raises(InvalidParameter):
        refs.list_repos(T, limit=0)


def test_repositories_and_tenants_are_isolated(refs: RefStore) -> None:
    for tenant, repo in ((T, "r"), (T, "s"), ("other", "r")):
        refs.create_repo(tenant, repo)
    refs.compare_and_swap(T, "r", [RefUpdate(MAIN, ZERO_SHA, A)])
    assert refs.get_refs(T, "s") == {}
    assert refs.get_refs("other", "r") == {}
    refs.delete_repo("other", "r")
    assert refs.get_refs(T, "r") == {MAIN: A}


def test_concurrent_cas_from_one_old_value_has_exactly_one_winner(refs: RefStore) -> None:
    refs.create_repo(T, "r")
    refs.compare_and_swap(T, "r", [RefUpdate(MAIN, ZERO_SHA, A)])
    results: list[bytes] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def move(i: int) -> None:
        new = b"%040x" % (i + 1)
        start.wait()
        try:
            refs.compare_and_swap(T, "r", [RefUpdate(MAIN, A, new)])
        except RefConflict:
            return
        with lock:
            results.append(new)

    threads = [threading.Thread(target=move, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1
    assert refs.get_refs(T, "r") == {MAIN: results[0]}


def test_concurrent_increments_lose_nothing(refs: RefStore) -> None:
    """Read-then-CAS loops in threads: every successful swap is a step of one chain."""
    refs.create_repo(T, "r")
    refs.compare_and_swap(T, "r", [RefUpdate(MAIN, ZERO_SHA, b"%040x" % 1)])  # 0 = delete

    def bump(times: int) -> None:
        done = 0
        while done < times:
            current = refs.get_refs(T, "r")[MAIN]
            try:
                refs.compare_and_swap(
                    T, "r", [RefUpdate(MAIN, current, b"%040x" % (int(current, 16) + 1))]
                )
                done += 1
            except RefConflict:
                continue

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(refs.get_refs(T, "r")[MAIN], 16) == 101


# -- AWS specifics -----------------------------------------------------------------------


@pytest.fixture
def dynamo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DynamoRefStore]:
    _aws_env(monkeypatch)
    store, cleanup = _dynamodb_refs(tmp_path)
    yield store
    cleanup()


def test_the_local_store_removes_a_crashed_puts_temporary_file_when_opened(
    tmp_path: Path,
) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("t/repo/packs/a.pack", b"whole")
    leftover = tmp_path / "objects" / "t" / "repo" / "packs" / ".tmp-abc123"
    leftover.write_bytes(b"half")  # what a kill -9 between write and rename leaves
    reopened = LocalObjectStore(tmp_path / "objects")
    assert not leftover.exists()
    assert reopened.list("t/") == ["t/repo/packs/a.pack"]
    assert reopened.get("t/repo/packs/a.pack") == b"whole"


def test_s3_store_keeps_to_its_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _aws_env(monkeypatch)
    store, cleanup = _s3_objects(tmp_path)
    try:
        store.put("tenants/t/repos/r/packs/a.pack", b"1")
        s3 = boto3.client("s3", region_name=REGION)
        listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        assert sorted(o["Key"] for o in listed) == [
            "executions/x",
            "git/tenants/t/repos/r/packs/a.pack",
        ]
        assert store.list("") == ["tenants/t/repos/r/packs/a.pack"]
        many = [f"k/{i:04d}" for i in range(1_005)]  # more than one ListObjectsV2 page
        for key in many:
            store.put(key, b"")
        assert store.list("k/") == many
    finally:
        cleanup()


def test_dynamodb_refs_of_any_bytes_and_many_of_them(dynamo: DynamoRefStore) -> None:
    dynamo.create_repo(T, "r")
    odd = b"refs/heads/\xff\xfe-not-utf8"
    dynamo.compare_and_swap(T, "r", [RefUpdate(odd, ZERO_SHA, A)])
    tags = [RefUpdate(b"refs/tags/v%03d" % i, ZERO_SHA, B) for i in range(MAX_REFS_PER_SWAP)]
    dynamo.compare_and_swap(T, "r", tags)
    assert len(dynamo.get_refs(T, "r")) == MAX_REFS_PER_SWAP + 1
    assert dynamo.get_refs(T, "r")[odd] == A
    with pytest.raises(PayloadTooLarge):
        dynamo.compare_and_swap(T, "r", [*tags, RefUpdate(MAIN, ZERO_SHA, A)])
    # Over 97 refs the delete is fenced, then purged; nothing of the repository remains.
    assert dynamo.count_repos(T) == 1
    dynamo.delete_repo(T, "r")
    assert dynamo.count_repos(T) == 0  # uncounted by the fence, once
    assert not dynamo.repo_exists(T, "r")
    assert dynamo.list_repos(T).names == []
    dynamo.create_repo(T, "r")
    assert dynamo.get_refs(T, "r") == {}


def test_dynamodb_an_interrupted_big_delete_is_finished_by_create(dynamo: DynamoRefStore) -> None:
    dynamo.create_repo(T, "r")
    dynamo.compare_and_swap(T, "r", [RefUpdate(MAIN, ZERO_SHA, A)])
    # A big delete that "crashed" right after its fence: the repository is gone for
    # every reader and writer, its ref items are still there.
    client = boto3.client("dynamodb", region_name=REGION)
    client.update_item(
        TableName=TABLE,
        Key=item_key(repo_pk(T, "r"), tables.REPO_SK),
        UpdateExpression="SET #d = :t",
        ExpressionAttributeNames={"#d": DELETING},
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    client.delete_item(TableName=TABLE, Key=item_key(f"{tables.REPO_LIST_PREFIX}{T}", "r"))
    assert not dynamo.repo_exists(T, "r")
    assert dynamo.list_repos(T).names == []
    with pytest.raises(RepoNotFound):
        dynamo.get_refs(T, "r")
    with pytest.raises(RepoNotFound):
        dynamo.compare_and_swap(T, "r", [RefUpdate(MAIN, A, B)])
    dynamo.create_repo(T, "r")  # finishes the purge first
    assert dynamo.get_refs(T, "r") == {}
    items = client.scan(TableName=TABLE)["Items"]
    # The repository and its listing entry, and the tenant's repository counter.
    assert sorted(i["sk"]["S"] for i in items if not i["pk"]["S"].startswith("UR#")) == [
        "REPO",
        "r",
    ]
