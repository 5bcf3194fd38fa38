"""Git repositories whose objects live in an ObjectStore and whose refs in a RefStore.

`ArtifactRepo` is a dulwich `BaseRepo` (what dulwich's server, walker and objectspec
code expect) over two adapters of ours:
- `PackObjectStore` (packs.py): objects as packs in the object store;
- `StoreRefsContainer` below: a dulwich `RefsContainer` whose every write
  (`set_if_equals`, `add_if_new`, `remove_if_equals`) is one `RefStore` compare-and-swap.

A repository handle is cheap and short-lived: open one per request, close it after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import TracebackType

from dulwich.config import ConfigFile, StackedConfig
from dulwich.errors import NoIndexPresent
from dulwich.objects import ObjectID
from dulwich.refs import HEADREF, SYMREF, Ref, RefsContainer
from dulwich.repo import BaseRepo

from treadle.artifacts.packs import PackCache, PackObjectStore
from treadle.artifacts.ports import (
    BORROWED_PACKS_REF,
    ZERO_SHA,
    ObjectStore,
    RefConflict,
    RefStore,
    RefUpdate,
)
from treadle.domain.audit import AuditRecord
from treadle.domain.errors import Conflict, TreadleError

log = logging.getLogger(__name__)

DEFAULT_BRANCH = b"refs/heads/main"
# Until something stores another HEAD, HEAD names main: clones of a new repository
# then check out `main`, whatever the client's init.defaultBranch says.
_DEFAULT_HEAD = SYMREF + DEFAULT_BRANCH
_UNCONDITIONAL_RETRIES = 5


def parse_borrowed(value: bytes) -> list[tuple[str, str]]:
    """The (repository, pack name) pairs of a borrowed-packs record."""
    pairs = []
    for line in value.decode("ascii").split("\n"):
        repo, sep, pack = line.partition("/")
        if sep:
            pairs.append((repo, pack))
    return pairs


def format_borrowed(pairs: Sequence[tuple[str, str]]) -> bytes:
    return "\n".join(f"{repo}/{pack}" for repo, pack in pairs).encode("ascii")


class StoreRefsContainer(RefsContainer):
    """Refs of one repository in a RefStore.

    Reads come from one snapshot per handle (so a ref advertisement is consistent and
    costs one store read); every write is a compare-and-swap on the store itself and
    then drops the snapshot. Writes report a lost race by returning False, as
    dulwich's contract says; `ArtifactRepo.compare_and_swap` raises instead.
    """

    def __init__(self, store: RefStore, tenant: str, repo: str) -> None:
        super().__init__()
        self._store = store
        self._tenant = tenant
        self._repo = repo
        self._snapshot: dict[bytes, bytes] | None = None
        self.borrowed: list[tuple[str, str]] = []

    def snapshot(self, *, fresh: bool = False) -> dict[bytes, bytes]:
        """The repository's Git refs (the borrowed-packs record is kept apart)."""
        if fresh or self._snapshot is None:
            refs = self._store.get_refs(self._tenant, self._repo)
            self.borrowed = parse_borrowed(refs.pop(BORROWED_PACKS_REF, b""))
            self._snapshot = refs
        return self._snapshot

    def compare_and_swap(
        self, updates: Sequence[RefUpdate], *, audit: AuditRecord | None = None
    ) -> None:
        try:
            self._store.compare_and_swap(self._tenant, self._repo, updates, audit=audit)
        finally:
            self._snapshot = None

    def _try(self, update: RefUpdate) -> bool:
        try:
            self.compare_and_swap([update])
        except RefConflict as exc:
            log.info("ref update lost a race: %s", exc.message)
            return False
        return True

    def _swap_unconditionally(self, name: Ref, new: bytes) -> bool:
        """Git's "set whatever it was": a CAS against a fresh read, retried on races."""
        for _ in range(_UNCONDITIONAL_RETRIES):
            current = self.snapshot(fresh=True).get(name, ZERO_SHA)
            if current == new:
                return True
            if self._try(RefUpdate(name, current, new)):
                return True
        return False

    # -- reads ---------------------------------------------------------------------

    def allkeys(self) -> set[Ref]:
        return {Ref(k) for k in self.snapshot()} | {HEADREF}

    def read_loose_ref(self, name: Ref) -> bytes | None:
        value = self.snapshot().get(name)
        if value is None and name == HEADREF:
            return _DEFAULT_HEAD
        return value

    def get_packed_refs(self) -> dict[Ref, ObjectID]:
        return {}

    def get_peeled(self, name: Ref) -> ObjectID | None:
        return None  # unknown: dulwich peels through the object store

    # -- writes --------------------------------------------------------------------

    def set_symbolic_ref(
        self,
        name: Ref,
        other: Ref,
        committer: bytes | None = None,
        timestamp: int | None = None,
        timezone: int | None = None,
        message: bytes | None = None,
    ) -> None:
        self._check_refname(name)
        self._check_refname(other)
        if not self._swap_unconditionally(name, SYMREF + other):
            raise Conflict(f"Ref {name.decode(errors='replace')} kept moving; not set.")

    def set_if_equals(
        self,
        name: Ref,
        old_ref: ObjectID | None,
        new_ref: ObjectID,
        committer: bytes | None = None,
        timestamp: int | None = None,
        timezone: int | None = None,
        message: bytes | None = None,
    ) -> bool:
        self._check_ref_value(new_ref)
        realname = self.follow(name)[0][-1]  # HEAD moves the branch it names
        self._check_refname(realname)
        if old_ref is None:
            return self._swap_unconditionally(realname, new_ref)
        return self._try(RefUpdate(realname, old_ref, new_ref))

    def add_if_new(
        self,
        name: Ref,
        ref: ObjectID,
        committer: bytes | None = None,
        timestamp: int | None = None,
        timezone: int | None = None,
        message: bytes | None = None,
    ) -> bool:
        self._check_ref_value(ref)
        self._check_refname(name)
        return self._try(RefUpdate(name, ZERO_SHA, ref))

    def remove_if_equals(
        self,
        name: Ref,
        old_ref: ObjectID | None,
        committer: bytes | None = None,
        timestamp: int | None = None,
        timezone: int | None = None,
        message: bytes | None = None,
    ) -> bool:
        self._check_refname(name)  # never the borrowed-packs record
        if old_ref is None:
            return self._swap_unconditionally(name, ZERO_SHA)
        return self._try(RefUpdate(name, old_ref, ZERO_SHA))


class ArtifactRepo(BaseRepo):
    """A bare repository: no working tree, no index, no config files, no hooks."""

    object_store: PackObjectStore
    refs: StoreRefsContainer

    def __init__(
        self, tenant: str, name: str, objects: PackObjectStore, refs: StoreRefsContainer
    ) -> None:
        super().__init__(objects, refs)
        self.tenant = tenant
        self.name = name
        self.bare = True
        self._config = ConfigFile()

    def __repr__(self) -> str:
        return f"ArtifactRepo({self.tenant!r}, {self.name!r})"

    def __enter__(self) -> ArtifactRepo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.object_store.close()

    def compare_and_swap(
        self, updates: Sequence[RefUpdate], *, audit: AuditRecord | None = None
    ) -> None:
        """All updates or none; RefConflict (and no change) if any ref moved."""
        self.refs.compare_and_swap(updates, audit=audit)

    def branch_tip(self, branch_ref: bytes) -> ObjectID | None:
        """The branch's commit as the store has it now (not the handle's snapshot)."""
        value = self.refs.snapshot(fresh=True).get(branch_ref)
        return None if value is None else ObjectID(value)

    # BaseRepo's file-backed features have no meaning here. Shallow lists, grafts and
    # descriptions are read through named files: there are none.
    def get_named_file(self, path: str, basedir: str | None = None) -> None:
        return None

    def _put_named_file(self, path: str, contents: bytes) -> None:
        raise NotImplementedError(f"artifact repositories keep no control file ({path})")

    def _del_named_file(self, path: str) -> None:
        return None

    def open_index(self, config: object = None) -> None:  # type: ignore[override]
        raise NoIndexPresent

    def get_config(self) -> ConfigFile:
        return self._config

    def get_config_stack(self) -> StackedConfig:
        # Not the default stack: the server's own ~/.gitconfig must not steer tenants'
        # repositories.
        return StackedConfig([self._config], writable=self._config)

    def get_description(self) -> bytes | None:
        return None


class Repositories:
    """Opens repository handles over one ObjectStore and one RefStore."""

    def __init__(
        self, objects: ObjectStore, refs: RefStore, cache: PackCache | None = None
    ) -> None:
        self.objects = objects
        self.refs = refs
        self._cache = cache or PackCache()

    def open_objects(self, tenant: str, repo: str) -> PackObjectStore:
        """The repository's own packs, whether or not it exists yet (an import writes
        them before the refs that make it exist)."""
        return PackObjectStore(
            self.objects, tenant, repo, self._cache, on_stored=self._counter(tenant)
        )

    def _counter(self, tenant: str) -> Callable[[int], None]:
        def stored(size: int) -> None:
            # After the pack is stored, not with it: a push never fails for its count.
            try:
                self.refs.add_repo_bytes(tenant, size)
            except TreadleError:
                log.exception("repository bytes of %s not counted (%d bytes)", tenant, size)

        return stored

    def open(self, tenant: str, repo: str) -> ArtifactRepo:
        """A handle; RepoNotFound if the repository does not exist.

        The first read of the refs doubles as the existence check (one store call).
        """
        refs = StoreRefsContainer(self.refs, tenant, repo)
        refs.snapshot()
        objects = PackObjectStore(
            self.objects, tenant, repo, self._cache, refs.borrowed, self._counter(tenant)
        )
        return ArtifactRepo(tenant, repo, objects, refs)
