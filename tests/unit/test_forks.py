"""Forks over both backends' stores (local + SQLite, S3 + DynamoDB on moto): the fork
reads its source's packs in place, writes its own, outlives its source; the record of
borrowed packs never reaches Git (receive-pack refuses a ref outside refs/ before
that: "funny refname")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
import pytest
from dulwich.errors import RefFormatError
from moto import mock_aws

from treadle.adapters.aws import create_tables
from treadle.adapters.aws.dynamodb_refs import DynamoRefStore
from treadle.adapters.aws.s3_objects import S3ObjectStore
from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.api.auth import GitGrant
from treadle.api.git_http import GitHttp
from treadle.api.http import Request
from treadle.artifacts import ArtifactService, Repositories
from treadle.artifacts.ports import BORROWED_PACKS_REF, repo_prefix

T = "123456789012"
AUTHOR = "Ada <ada@example.com>"


def _local(tmp: Path) -> tuple[Repositories, Callable[[], None]]:
    refs = SqliteRefStore(tmp / "refs.sqlite")
    return Repositories(LocalObjectStore(tmp / "objects"), refs), refs.close


def _aws(_tmp: Path) -> tuple[Repositories, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="treadle-forks")
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    create_tables(ddb, "t")
    repos = Repositories(S3ObjectStore(s3, "treadle-forks"), DynamoRefStore(ddb, "t"))
    return repos, lambda: mock.__exit__(None, None, None)


@pytest.fixture(params=["local", "aws"])
def repos(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Repositories]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    made, cleanup = (_local if request.param == "local" else _aws)(tmp_path)
    yield made
    cleanup()


def _keys(repos: Repositories, repo: str) -> list[str]:
    return repos.objects.list(repo_prefix(T, repo))


def test_a_fork_reads_shared_packs_writes_its_own_and_outlives_its_source(
    repos: Repositories,
) -> None:
    service = ArtifactService(repos)
    service.create_repo(T, "a")
    service.commit_files(T, "a", "main", {"f.txt": b"from a"}, "one", AUTHOR)
    a_keys = _keys(repos, "a")
    service.create_repo(T, "b", fork_of="a")
    assert _keys(repos, "b") == []
    assert service.refs(T, "b") == service.refs(T, "a")
    assert service.read_blob(T, "b", "main", "f.txt") == b"from a"
    service.commit_files(T, "b", "main", {"g.txt": b"from b"}, "two", AUTHOR)
    assert len(_keys(repos, "b")) == 2 and _keys(repos, "a") == a_keys
    service.delete_repo(T, "a")
    assert _keys(repos, "a") == a_keys  # held by b
    assert service.read_blob(T, "b", "main", "f.txt") == b"from a"
    service.delete_repo(T, "b")
    assert _keys(repos, "a") == [] and _keys(repos, "b") == []
    assert repos.objects.list(f"tenants/{T}/") == []  # no hold left behind either


def test_the_borrowed_packs_record_is_neither_advertised_nor_writable(
    repos: Repositories,
) -> None:
    service = ArtifactService(repos)
    service.create_repo(T, "a")
    service.commit_files(T, "a", "main", {"f.txt": b"x"}, "one", AUTHOR)
    service.create_repo(T, "b", fork_of="a")
    assert BORROWED_PACKS_REF in repos.refs.get_refs(T, "b")
    assert all(not ref.startswith("treadle/") for ref in service.refs(T, "b"))
    git = GitHttp(repos, lambda request: GitGrant(T))
    request = Request.build("GET", f"/git/{T}/b.git/info/refs", "service=git-upload-pack", {}, b"")
    response = git(request)
    assert response.status == 200 and b"treadle/" not in response.body
    with repos.open(T, "b") as r:
        for write in (
            lambda: r.refs.remove_if_equals(BORROWED_PACKS_REF, None),
            lambda: r.refs.set_if_equals(BORROWED_PACKS_REF, None, b"1" * 40),
            lambda: r.refs.add_if_new(BORROWED_PACKS_REF, b"1" * 40),
        ):
            with pytest.raises((KeyError, RefFormatError)):
                write()
    assert service.read_blob(T, "b", "main", "f.txt") == b"x"
