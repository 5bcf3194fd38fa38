"""Artifact repositories as use cases: what the `/v1` REST routes call.

Errors are Treadle's (`treadle.domain.errors`): InvalidParameter for a malformed
request, NotFound for a missing repository/ref/path, AlreadyExists and Conflict for
state that forbids the request (a branch that is not at the expected parent).
"""

from __future__ import annotations

import logging
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dulwich.errors import NotTreeError
from dulwich.objects import S_ISGITLINK, Blob, Commit, ObjectID, SubmoduleEncountered, Tree
from dulwich.objectspec import parse_commit
from dulwich.refs import Ref, check_ref_format

from treadle.artifacts.edits import check_path, stage_tree, staged_objects
from treadle.artifacts.forks import RepoCopies, delete_objects
from treadle.artifacts.ports import (
    BORROWED_PACKS_REF,
    ZERO_SHA,
    RefConflict,
    RefUpdate,
    RepoPage,
    TokenStore,
)
from treadle.artifacts.repository import ArtifactRepo, Repositories, parse_borrowed
from treadle.domain.errors import Conflict, InvalidParameter, NotFound

log = logging.getLogger(__name__)

_REPO_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_IDENTITY = re.compile(r"([^<>\n]+?) <([^<>\n]*)>")
_HEX_SHA = re.compile(r"[0-9a-f]{40}")
_RETRIES = 5  # commit_files without an expected parent re-applies on a moved branch


@dataclass(frozen=True)
class TreeEntry:
    name: str
    path: str
    kind: str  # "file" | "directory" | "symlink" | "submodule"
    mode: int
    sha: str


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: str
    author_time: int  # seconds since the epoch
    author_tz: int  # offset from UTC in seconds
    committer: str
    commit_time: int
    commit_tz: int
    message: str


def check_repo_name(name: str) -> None:
    if not isinstance(name, str) or not _REPO_NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidParameter(
            f"Invalid repository name {name!r}: use 1 to 100 letters, digits, '.', '_' or '-'"
            " (not '.' or '..')."
        )


def _branch_ref(branch: str) -> bytes:
    ref = ("refs/heads/" + branch).encode("utf-8") if isinstance(branch, str) else b""
    if not branch or branch.startswith("refs/") or not check_ref_format(Ref(ref)):
        raise InvalidParameter(f"Invalid branch name {branch!r}.")
    return ref


def _identity(author: str) -> bytes:
    if not isinstance(author, str) or not _IDENTITY.fullmatch(author):
        raise InvalidParameter(f"Invalid author {author!r}: expected 'Name <email>'.")
    return author.encode("utf-8")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if S_ISGITLINK(mode):
        return "submodule"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file"


class ArtifactService:
    def __init__(
        self,
        repositories: Repositories,
        *,
        clock: Callable[[], float] = time.time,
        tokens: TokenStore | None = None,
    ):
        self._repos = repositories
        self._clock = clock
        self._tokens = tokens

    # -- repositories ----------------------------------------------------------------

    def create_repo(
        self, tenant: str, name: str, *, fork_of: str | None = None, bundle: str | None = None
    ) -> None:
        """Empty (one row in the ref store; no objects until the first commit or push),
        a fork of `fork_of` sharing its packs, or imported from a base64 Git bundle."""
        check_repo_name(name)
        if fork_of is not None and bundle is not None:
            raise InvalidParameter("Give forkOf or bundle, not both.")
        if fork_of is not None:
            check_repo_name(fork_of)
            RepoCopies(self._repos).fork(tenant, name, fork_of)
            return
        if bundle is not None:
            RepoCopies(self._repos).import_bundle(tenant, name, bundle)
            return
        self._repos.refs.create_repo(tenant, name)
        log.info("created repository %s/%s", tenant, name)

    def list_repos(self, tenant: str, *, limit: int = 100, marker: str | None = None) -> RepoPage:
        if not 1 <= limit <= 1000:
            raise InvalidParameter(f"limit must be between 1 and 1000, not {limit}.")
        return self._repos.refs.list_repos(tenant, limit=limit, after=marker)

    def delete_repo(self, tenant: str, name: str) -> None:
        """Tokens and refs first (the repository vanishes at once), then its packs
        (those no fork holds).

        Packs left by a crash in between are unreachable and invisible to other tenants
        (their keys are under this tenant's prefix); garbage collection removes them.
        """
        check_repo_name(name)
        borrowed = parse_borrowed(
            self._repos.refs.get_refs(tenant, name).get(BORROWED_PACKS_REF, b"")
        )
        # Its tokens go too, before and after: none minted meanwhile, nor left by a
        # crash, may open a repository re-created under the same name.
        if self._tokens is not None:
            self._tokens.delete_repo(tenant, name)
        self._repos.refs.delete_repo(tenant, name)
        if self._tokens is not None:
            self._tokens.delete_repo(tenant, name)
        # Packs that forks hold stay (`forks.py`).
        delete_objects(self._repos, tenant, name, borrowed)
        log.info("deleted repository %s/%s", tenant, name)

    def refs(self, tenant: str, name: str) -> dict[str, str]:
        """The repository's refs (name to commit sha); RepoNotFound if it does not exist."""
        check_repo_name(name)
        return {
            ref.decode("utf-8", "replace"): sha.decode("utf-8", "replace")
            for ref, sha in self._repos.refs.get_refs(tenant, name).items()
            if ref != BORROWED_PACKS_REF
        }

    # -- writes ----------------------------------------------------------------------

    def commit_files(
        self,
        tenant: str,
        repo: str,
        branch: str,
        files: Mapping[str, bytes | None],
        message: str,
        author: str,
        expected_parent: str | None = None,
    ) -> str:
        """Commit `files` (None deletes a path) on `branch`; returns the new commit sha.

        `expected_parent` is a compare-and-swap guard: the branch must be at that commit
        (40 zeros: the branch must not exist yet), else Conflict and nothing changes.
        Without it the commit goes on top of the branch's current tip (a root commit
        if the branch does not exist), re-applied if another writer moves it meanwhile.
        """
        ref = _branch_ref(branch)
        identity = _identity(author)
        if not isinstance(message, str) or not message.strip():
            raise InvalidParameter("message must not be empty.")
        body = message.encode("utf-8") + (b"" if message.endswith("\n") else b"\n")
        expected = self._expected(expected_parent)
        with self._open(tenant, repo) as r:
            for _attempt in range(_RETRIES if expected is None else 1):
                tip = r.branch_tip(ref)
                if expected is not None and (tip or ZERO_SHA) != expected:
                    raise self._moved(branch, expected, tip)
                commit = self._new_commit(r, tip, files, identity, body)
                try:
                    r.compare_and_swap([RefUpdate(ref, tip or ZERO_SHA, commit)])
                except RefConflict as conflict:
                    if expected is not None:
                        raise self._moved(branch, expected, conflict.actual) from None
                    log.info("%s/%s %s moved during a commit; re-applying", tenant, repo, branch)
                    continue
                log.info("committed %s on %s/%s %s", commit.decode(), tenant, repo, branch)
                return commit.decode("ascii")
        raise Conflict(
            f"Branch '{branch}' kept moving under concurrent writes; gave up after "
            f"{_RETRIES} attempts. Retry, or pass the expected parent."
        )

    def _new_commit(
        self,
        r: ArtifactRepo,
        parent: ObjectID | None,
        files: Mapping[str, bytes | None],
        identity: bytes,
        message: bytes,
    ) -> ObjectID:
        """Build and store (as one pack) the tree and commit; the branch is not moved."""
        if parent is None:
            base = Tree()
        else:
            parent_commit = r.object_store[parent]
            assert isinstance(parent_commit, Commit)
            base_tree = r.object_store[parent_commit.tree]
            assert isinstance(base_tree, Tree)
            base = base_tree
        tree_id, staging = stage_tree(r.object_store, base, files)
        commit = Commit()
        commit.tree = tree_id
        commit.parents = [] if parent is None else [parent]
        commit.author = commit.committer = identity
        commit.author_time = commit.commit_time = int(self._clock())
        commit.author_timezone = commit.commit_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = message
        staging.add_object(commit)
        # Objects before the ref: a ref never points at something not yet stored.
        r.object_store.add_objects(staged_objects(staging))
        return commit.id

    @staticmethod
    def _expected(expected_parent: str | None) -> bytes | None:
        if expected_parent is None:
            return None
        if not isinstance(expected_parent, str) or not _HEX_SHA.fullmatch(expected_parent):
            raise InvalidParameter(
                f"Invalid expected parent {expected_parent!r}: a full 40-digit lower-case "
                "commit sha (or 40 zeros for a new branch)."
            )
        return expected_parent.encode("ascii")

    @staticmethod
    def _moved(branch: str, expected: bytes, actual: bytes | None) -> Conflict:
        want = "not to exist" if expected == ZERO_SHA else f"at {expected.decode()}"
        now = "does not exist" if actual is None else f"is at {actual.decode()}"
        return Conflict(f"Branch '{branch}' {now}, but the commit expected it {want}.")

    # -- reads -----------------------------------------------------------------------

    def read_tree(self, tenant: str, repo: str, ref: str, path: str = "") -> list[TreeEntry]:
        """The entries of the directory at `path` ("" is the root) at `ref`."""
        with self._open(tenant, repo) as r:
            commit = self._commit_at(r, repo, ref)
            norm = path.strip("/")
            mode, sha = self._lookup(r, commit, norm, ref) if norm else (0o40000, commit.tree)
            if not stat.S_ISDIR(mode):
                raise InvalidParameter(f"'{norm}' is a {_kind(mode)} at {ref}, not a directory.")
            tree = r.object_store[sha]
            assert isinstance(tree, Tree)
            prefix = f"{norm}/" if norm else ""
            return [
                TreeEntry(
                    name=(name := entry.path.decode("utf-8", "replace")),
                    path=prefix + name,
                    kind=_kind(entry.mode),
                    mode=entry.mode,
                    sha=entry.sha.decode("ascii"),
                )
                for entry in tree.iteritems()
            ]

    def read_blob(self, tenant: str, repo: str, ref: str, path: str) -> bytes:
        """The content of the file at `path` at `ref` (a symlink's target for a symlink)."""
        with self._open(tenant, repo) as r:
            commit = self._commit_at(r, repo, ref)
            norm = path.strip("/")
            if not norm:
                raise InvalidParameter("path must name a file.")
            mode, sha = self._lookup(r, commit, norm, ref)
            if stat.S_ISDIR(mode) or S_ISGITLINK(mode):
                raise InvalidParameter(f"'{norm}' is a {_kind(mode)} at {ref}, not a file.")
            blob = r.object_store[sha]
            assert isinstance(blob, Blob)
            return blob.as_raw_string()

    def log(self, tenant: str, repo: str, ref: str, limit: int = 50) -> list[CommitInfo]:
        """Up to `limit` commits reachable from `ref`, newest first."""
        if not 1 <= limit <= 1000:
            raise InvalidParameter(f"limit must be between 1 and 1000, not {limit}.")
        with self._open(tenant, repo) as r:
            commit = self._commit_at(r, repo, ref)
            return [
                _commit_info(entry.commit)
                for entry in r.get_walker(include=[commit.id], max_entries=limit)
            ]

    # -- helpers ---------------------------------------------------------------------

    def _open(self, tenant: str, repo: str) -> ArtifactRepo:
        check_repo_name(repo)
        return self._repos.open(tenant, repo)

    @staticmethod
    def _commit_at(r: ArtifactRepo, repo: str, ref: str) -> Commit:
        if not isinstance(ref, str) or not ref or len(ref) > 256:
            raise InvalidParameter(f"Invalid ref {ref!r}.")
        try:
            return parse_commit(r, ref.encode("utf-8"))
        except KeyError:
            if not r.refs.snapshot():
                raise NotFound(f"Repository '{repo}' has no commits yet.") from None
            raise NotFound(f"Ref '{ref}' does not exist in repository '{repo}'.") from None
        except ValueError as exc:
            raise InvalidParameter(f"Ref '{ref}' does not name a commit: {exc}") from None

    @staticmethod
    def _lookup(r: ArtifactRepo, commit: Commit, path: str, ref: str) -> tuple[int, ObjectID]:
        encoded = check_path(path)
        tree = r.object_store[commit.tree]
        assert isinstance(tree, Tree)
        try:
            return tree.lookup_path(r.object_store.__getitem__, encoded)
        # NotTreeError / SubmoduleEncountered: a prefix of the path is not a directory.
        except (KeyError, NotTreeError, SubmoduleEncountered):
            raise NotFound(f"Path '{path}' does not exist at {ref}.") from None


def _commit_info(c: Commit) -> CommitInfo:
    def text(value: bytes) -> str:
        return value.decode("utf-8", "replace")

    return CommitInfo(
        sha=text(c.id),
        tree=text(c.tree),
        parents=tuple(text(p) for p in c.parents),
        author=text(c.author),
        author_time=c.author_time,
        author_tz=c.author_timezone,
        committer=text(c.committer),
        commit_time=c.commit_time,
        commit_tz=c.commit_timezone,
        message=text(c.message),
    )
