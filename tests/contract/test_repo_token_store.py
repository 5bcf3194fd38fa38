"""One contract for every TokenStore adapter (repository tokens for Git), and the
token rules above it (`RepoTokens`) run over each.

Adding an adapter is one entry in STORES: a factory taking a fresh temporary directory
and returning (store, cleanup). The DynamoDB adapter runs against moto (`mock_aws`, a
fresh account per test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from treadle.adapters.aws import create_tables
from treadle.adapters.aws.dynamodb_repo_tokens import DynamoTokenStore
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.adapters.sqlite.repo_tokens import SqliteTokenStore
from treadle.artifacts.ports import RepoNotFound, RepoToken, TokenNotFound, TokenStore
from treadle.artifacts.tokens import MAX_TTL_S, RepoTokens
from treadle.domain.errors import AlreadyExists, InvalidParameter

Factory = Callable[[Path], tuple[Any, Callable[[], None]]]
REGION = "us-east-1"
TABLE = "treadle-test"
A, B = "111111111111", "222222222222"
NOW = 1_700_000_000_000


def _sqlite(tmp: Path) -> tuple[Any, Callable[[], None]]:
    store = SqliteTokenStore(tmp / "tokens.sqlite")
    return store, store.close


def _dynamodb(_tmp: Path) -> tuple[Any, Callable[[], None]]:
    mock: AbstractContextManager[Any] = mock_aws()
    mock.__enter__()
    client = boto3.client("dynamodb", region_name=REGION)
    create_tables(client, TABLE)
    return DynamoTokenStore(client, TABLE), lambda: mock.__exit__(None, None, None)


STORES: dict[str, Factory] = {"sqlite": _sqlite, "dynamodb": _dynamodb}


@pytest.fixture(params=sorted(STORES))
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TokenStore]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    made, cleanup = STORES[request.param](tmp_path)
    yield made
    cleanup()


def _token(token_id: str = "rt" + "0" * 24, tenant: str = A, repo: str = "x") -> RepoToken:
    return RepoToken(
        token_id=token_id,
        tenant=tenant,
        repo=repo,
        access="read",
        secret_hash="ab" * 32,
        created_ms=NOW,
        expires_ms=NOW + 60_000,
    )


def test_a_stored_token_is_read_back_by_id_exactly(store: TokenStore) -> None:
    token = _token()
    store.put(token)
    assert store.get(token.token_id) == token
    assert store.get("rt" + "f" * 24) is None


def test_a_token_id_cannot_be_stored_twice(store: TokenStore) -> None:
    store.put(_token())
    with pytest.raises(AlreadyExists):
        store.put(replace(_token(), repo="y"))
    assert store.list(A, "y") == []


def test_listing_shows_one_repositorys_tokens_only_by_id(store: TokenStore) -> None:
    ids = ["rt" + c * 24 for c in "312"]
    for token_id in ids:
        store.put(_token(token_id))
    store.put(_token("rt" + "4" * 24, repo="other"))
    store.put(_token("rt" + "5" * 24, tenant=B))
    assert [t.token_id for t in store.list(A, "x")] == sorted(ids)
    assert [t.token_id for t in store.list(B, "x")] == ["rt" + "5" * 24]


def test_revoking_removes_the_token_from_lookup_and_listing(store: TokenStore) -> None:
    token = _token()
    store.put(token)
    store.delete(A, "x", token.token_id)
    assert store.get(token.token_id) is None
    assert store.list(A, "x") == []
    with pytest.raises(TokenNotFound):
        store.delete(A, "x", token.token_id)


def test_another_tenant_or_repository_cannot_revoke_a_token(store: TokenStore) -> None:
    token = _token()
    store.put(token)
    for tenant, repo in ((B, "x"), (A, "y")):
        with pytest.raises(TokenNotFound):
            store.delete(tenant, repo, token.token_id)
    assert store.get(token.token_id) == token


def test_deleting_a_repositorys_tokens_leaves_the_others(store: TokenStore) -> None:
    store.put(_token("rt" + "1" * 24))
    store.put(_token("rt" + "2" * 24))
    store.put(_token("rt" + "3" * 24, repo="y"))
    store.delete_repo(A, "x")
    store.delete_repo(A, "never-had-any")
    assert store.list(A, "x") == []
    assert store.get("rt" + "1" * 24) is None
    assert [t.token_id for t in store.list(A, "y")] == ["rt" + "3" * 24]


# -- the rules over any store ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.ms = NOW

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def tokens(store: TokenStore, tmp_path: Path) -> Iterator[tuple[RepoTokens, Clock]]:
    refs = SqliteRefStore(tmp_path / "refs.sqlite")
    for tenant, repo in ((A, "x"), (A, "y"), (B, "x")):
        refs.create_repo(tenant, repo)
    clock = Clock()
    yield RepoTokens(store, refs, now_ms=clock), clock
    refs.close()


def test_a_minted_token_verifies_until_it_expires(tokens: tuple[RepoTokens, Clock]) -> None:
    service, clock = tokens
    token, secret = service.mint(A, "x", "write", 60)
    assert token.expires_ms == NOW + 60_000 and token.access == "write"
    assert secret.split(".")[1] not in token.secret_hash
    assert service.verify(secret) == token
    clock.ms = NOW + 59_999
    assert service.verify(secret) == token
    clock.ms = NOW + 60_000
    assert service.verify(secret) is None
    assert service.list(A, "x") == []


def test_a_wrong_malformed_or_revoked_token_does_not_verify(
    tokens: tuple[RepoTokens, Clock],
) -> None:
    service, _clock = tokens
    token, secret = service.mint(A, "x", "read", 60)
    token_id, raw = secret.split(".")
    flipped = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    for bad in (f"{token_id}.{flipped}", token_id, "", "x" * 67, f"{token_id}.{raw}.x"):
        assert service.verify(bad) is None
    service.revoke(A, "x", token.token_id)
    assert service.verify(secret) is None


def test_tokens_are_minted_only_for_an_existing_repository_of_the_tenant(
    tokens: tuple[RepoTokens, Clock],
) -> None:
    service, _clock = tokens
    with pytest.raises(RepoNotFound):
        service.mint(B, "y", "read", 60)  # A's repository name, B has none
    with pytest.raises(RepoNotFound):
        service.list(B, "y")
    token, _secret = service.mint(A, "y", "read", 60)
    with pytest.raises(TokenNotFound):
        service.revoke(B, "x", token.token_id)


@pytest.mark.parametrize(
    ("access", "ttl", "message"),
    [
        ("admin", 60, "access must be 'read' or 'write'"),
        ("read", 0, "ttlSeconds must be an integer from 1"),
        ("read", MAX_TTL_S + 1, "ttlSeconds must be an integer from 1"),
        ("read", True, "ttlSeconds must be an integer from 1"),
    ],
)
def test_a_bad_access_or_ttl_is_refused_with_a_precise_message(
    tokens: tuple[RepoTokens, Clock], access: str, ttl: int, message: str
) -> None:
    service, _clock = tokens
    with pytest.raises(InvalidParameter, match=message):
        service.mint(A, "x", access, ttl)
