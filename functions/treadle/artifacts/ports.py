"""Ports of the artifact repositories: where Git objects and refs are kept.

Objects (packs and their indexes) go to an `ObjectStore`: a flat, S3-like key space of
immutable blobs. Refs go to a `RefStore` whose one write operation is an all-or-nothing
compare-and-swap, which is what keeps two concurrent pushes from losing a commit.

Stdlib only (plus Treadle's own stdlib-only error tree, so the API maps these errors
without a translation table): the S3 and DynamoDB adapters implement the same
Protocols and pass the same contract suite (`tests/contract/test_artifact_stores.py`).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from treadle.domain.audit import AuditRecord
from treadle.domain.errors import (
    AlreadyExists,
    Conflict,
    InvalidParameter,
    NotFound,
    PayloadTooLarge,
)

# The "absent" value of a ref in a compare-and-swap, as on Git's wire. Any all-zero
# value (40 or 64 digits, for SHA-1 or SHA-256 repositories) means the same.
ZERO_SHA = b"0" * 40
# Key segments starting with this are reserved for an adapter's temporary files (the
# local store writes them beside their target), so no valid key can collide with one.
RESERVED_SEGMENT_PREFIX = ".tmp-"
MAX_KEY = 1024  # S3's limit: a key valid in one ObjectStore is valid in every other
# Refs a repository may be created with at once (a fork, an import): what one DynamoDB
# transaction holds beside the repository's own two items and its tenant's counter.
MAX_INITIAL_REFS = 97


class InvalidKey(InvalidParameter):
    """An object key or listing prefix that could escape its root or that S3 would
    treat differently from a directory."""


def check_key(key: str) -> None:
    """The keys every ObjectStore accepts; InvalidKey for any other."""
    if not key or len(key) > MAX_KEY:
        raise InvalidKey(f"object key must be 1 to {MAX_KEY} characters: {key!r}")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKey(f"object key must be a relative '/'-separated path: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or segment.startswith(RESERVED_SEGMENT_PREFIX):
            raise InvalidKey(f"object key has an invalid segment {segment!r}: {key!r}")


def check_prefix(prefix: str) -> None:
    """The listing prefixes every ObjectStore accepts: they must not climb out either."""
    if "\\" in prefix or "\x00" in prefix or prefix.startswith("/"):
        raise InvalidKey(f"invalid key prefix: {prefix!r}")
    if ".." in prefix.split("/"):
        raise InvalidKey(f"invalid key prefix: {prefix!r}")


def is_zero(value: bytes) -> bool:
    return not value.strip(b"0")


def repo_prefix(tenant: str, repo: str) -> str:
    """The key prefix under which one repository's objects live."""
    for part in (tenant, repo):
        # Defence in depth: callers validate names, but a key must never leave its prefix.
        if not part or "/" in part or part in (".", ".."):
            raise InvalidKey(f"invalid tenant or repository name in an object key: {part!r}")
    return f"tenants/{tenant}/repos/{repo}/"


def pack_key(tenant: str, repo: str, name: str, ext: str) -> str:
    """`tenants/<tenant>/repos/<repo>/packs/<name>.<ext>`, ext being `pack` or `idx`."""
    return f"{repo_prefix(tenant, repo)}packs/{name}.{ext}"


# A ref outside `refs/` that Git never shows nor accepts: the packs a fork reads from the
# repositories it was forked from, one `<repo>/<pack name>` per line (`forks.py`).
BORROWED_PACKS_REF = b"treadle/borrowed-packs"


def hold_prefix(tenant: str, repo: str, pack: str) -> str:
    """Keys under which forks hold `repo`'s pack (one key per holding repository):
    deleting `repo` keeps a held pack."""
    repo_prefix(tenant, repo)  # the same name checks
    return f"tenants/{tenant}/holds/{repo}/{pack}/"


def check_initial_refs(refs: Mapping[bytes, bytes]) -> None:
    """Validation every RefStore adapter runs on `create_repo`'s refs."""
    if len(refs) > MAX_INITIAL_REFS:
        raise PayloadTooLarge(
            f"A repository can be created with at most {MAX_INITIAL_REFS} refs, not {len(refs)}."
        )
    for ref, value in refs.items():
        if not ref or not value or is_zero(value):
            raise InvalidParameter(f"ref {ref!r} needs a name and a non-zero value")


def check_updates(updates: Sequence[RefUpdate]) -> None:
    """Validation every RefStore adapter runs first, so they all refuse the same batches."""
    if not updates:
        raise InvalidParameter("compare_and_swap needs at least one update")
    seen: set[bytes] = set()
    for ref, old, new in updates:
        if not ref:
            raise InvalidParameter("ref name must not be empty")
        if not old or not new:
            raise InvalidParameter(
                f"old and new values of {ref!r} must not be empty (use ZERO_SHA)"
            )
        if ref in seen:
            raise InvalidParameter(f"ref {ref!r} appears twice in one compare_and_swap")
        seen.add(ref)


class ObjectNotFound(KeyError):
    """`ObjectStore.get` of a key that does not exist."""


class RepoNotFound(NotFound):
    def __init__(self, tenant: str, repo: str) -> None:
        super().__init__(f"Repository '{repo}' does not exist.")
        self.tenant = tenant
        self.repo = repo


class RepoAlreadyExists(AlreadyExists):
    def __init__(self, tenant: str, repo: str) -> None:
        super().__init__(f"Repository '{repo}' already exists.")
        self.tenant = tenant
        self.repo = repo


class RefConflict(Conflict):
    """A compare-and-swap found a ref at another value than expected; nothing changed."""

    def __init__(self, ref: bytes, expected: bytes, actual: bytes | None) -> None:
        shown_actual = "absent" if actual is None else f"at {actual.decode(errors='replace')}"
        shown_expected = (
            "absent" if is_zero(expected) else f"at {expected.decode(errors='replace')}"
        )
        super().__init__(
            f"Ref {ref.decode(errors='replace')} is {shown_actual}, "
            f"but the update expected it {shown_expected}."
        )
        self.ref = ref
        self.expected = expected
        self.actual = actual


class RefUpdate(NamedTuple):
    """Move `ref` from `old` to `new`; ZERO_SHA as `old` means "must not exist", as
    `new` means "delete". Values are opaque bytes: hex SHAs or `ref: <target>` symrefs.
    """

    ref: bytes
    old: bytes
    new: bytes


@dataclass(frozen=True)
class RepoPage:
    names: list[str]
    next_marker: str | None  # pass as `after` for the next page; None on the last page


class TokenNotFound(NotFound):
    def __init__(self, repo: str, token_id: str) -> None:
        super().__init__(f"Token '{token_id}' of repository '{repo}' does not exist.")
        self.repo = repo
        self.token_id = token_id


@dataclass(frozen=True)
class RepoToken:
    """A Git credential for one repository of one tenant, until `expires_ms`.

    Only a hash of the secret is kept: HTTP Basic sends the secret itself, so a hash is
    all that verifying it needs, and a copy of the store opens nothing.
    """

    token_id: str
    tenant: str
    repo: str
    access: str  # "read" | "write"
    secret_hash: str  # sha256 hex of the secret
    created_ms: int
    expires_ms: int


class TokenStore(Protocol):
    """Repository tokens by id, and per repository for listing. Every write is atomic."""

    def put(self, token: RepoToken) -> None:
        """Store a new token; AlreadyExists if its id is taken."""

    def get(self, token_id: str) -> RepoToken | None:
        """The token, whatever its expiry (expired ones may already be gone); None if absent."""

    def list(self, tenant: str, repo: str) -> list[RepoToken]:
        """The repository's tokens, by id."""

    def delete(self, tenant: str, repo: str, token_id: str) -> None:
        """Remove one token; TokenNotFound if absent or not that repository's."""

    def delete_repo(self, tenant: str, repo: str) -> None:
        """Remove every token of the repository (none: no error)."""


class ObjectStore(Protocol):
    """Immutable-blob key space (a directory, S3). Keys are `/`-separated relative paths
    without empty, `.` or `..` segments (`check_key`); adapters raise InvalidKey for any
    other key or listing prefix (`check_prefix`).
    A `put` is atomic: readers see the old bytes or the new ones, never a mix.
    """

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes:
        """The bytes; ObjectNotFound if the key does not exist."""

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]:
        """Every key starting with `prefix` (a plain string prefix), sorted."""

    def list_info(self, prefix: str) -> builtins.list[ObjectInfo]:
        """As `list`, with each object's size and when it was written (garbage
        collection: bytes reclaimed, and the grace period that spares new packs)."""

    def delete(self, key: str) -> None:
        """Remove the key; no error if it does not exist."""


class ObjectInfo(NamedTuple):
    key: str
    size: int
    modified_ms: int  # when it was written (epoch ms)


class RefStore(Protocol):
    """Repositories and their refs, per tenant."""

    def create_repo(
        self, tenant: str, repo: str, refs: Mapping[bytes, bytes] | None = None
    ) -> None:
        """Register a repository holding `refs` (none: empty), all at once;
        RepoAlreadyExists if it exists; InvalidParameter for an empty name or value;
        PayloadTooLarge beyond MAX_INITIAL_REFS refs."""

    def delete_repo(self, tenant: str, repo: str) -> None:
        """Remove the repository and all its refs at once; RepoNotFound if absent."""

    def repo_exists(self, tenant: str, repo: str) -> bool: ...

    def count_repos(self, tenant: str) -> int:
        """The tenant's repositories: a counter moved by the transactions of create and
        delete, so one read (its usage)."""

    def add_repo_bytes(self, tenant: str, delta: int) -> None:
        """Move the tenant's repository bytes (packs stored, negative: removed)."""

    def repo_bytes(self, tenant: str) -> int:
        """The tenant's repository bytes (never below 0): a few reads (its usage)."""

    def list_repos(self, tenant: str, *, limit: int = 100, after: str | None = None) -> RepoPage:
        """Names in ascending order, strictly after `after`, at most `limit`
        (InvalidParameter if it is below 1)."""

    def get_refs(self, tenant: str, repo: str) -> dict[bytes, bytes]:
        """Every ref of the repository (name -> value); RepoNotFound if absent."""

    def compare_and_swap(
        self,
        tenant: str,
        repo: str,
        updates: Sequence[RefUpdate],
        *,
        audit: AuditRecord | None = None,
    ) -> None:
        """Apply every update or none (`audit`: a push's record, written with them).

        RefConflict (naming the first ref found at another value than its `old`) if any
        does not match; RepoNotFound if the repository is absent; InvalidParameter if
        the batch is empty or names a ref twice (`check_updates`).
        """
