"""Repositories made from others: forks (sharing packs) and imports from a Git bundle.

A fork copies no object. It is created, in one `RefStore.create_repo`, with its
source's refs and a borrowed-packs record (`BORROWED_PACKS_REF`, hidden from Git):
the source's own packs and those the source itself borrowed, by repository and pack
name. Its object store reads those packs where they are; pushes to the fork write packs
under the fork's own prefix only, and what the source receives later is not seen by
the fork (a fork is a snapshot, as on a Git host).

Deleting a repository must not break the forks reading its packs, so before a fork
exists each pack it borrows is *held*: one small object per (pack, holder) under
`hold_prefix`. Deleting a repository removes its refs, then only its packs that no
fork holds; deleting a fork releases its holds and removes the packs that were kept
only for it (their repository being gone). Holds are written before the fork's refs
and checked after: a pack deleted in between makes the fork fail (Conflict, nothing
left behind) rather than exist broken.
"""

from __future__ import annotations

import base64
import binascii
import logging
from io import BytesIO

from dulwich.bundle import read_bundle
from dulwich.objects import ObjectID

from treadle.artifacts.ports import (
    BORROWED_PACKS_REF,
    ObjectStore,
    RepoAlreadyExists,
    hold_prefix,
    repo_prefix,
)
from treadle.artifacts.repository import Repositories, format_borrowed
from treadle.domain.errors import Conflict, InvalidParameter, PayloadTooLarge

log = logging.getLogger(__name__)

# Borrowed packs one fork may record (about 60 bytes each in one DynamoDB item).
MAX_BORROWED_PACKS = 4000


def own_packs(objects: ObjectStore, tenant: str, repo: str) -> list[str]:
    """Names of the complete packs under the repository's own prefix."""
    prefix = f"{repo_prefix(tenant, repo)}packs/"
    exts: dict[str, set[str]] = {}
    for key in objects.list(prefix):
        name, _, ext = key[len(prefix) :].rpartition(".")
        exts.setdefault(name, set()).add(ext)
    return sorted(n for n, e in exts.items() if {"pack", "idx"} <= e)


def _pack_keys(tenant: str, repo: str, pack: str) -> list[str]:
    # Index first: a pack stops being listed before its data goes.
    return [f"{repo_prefix(tenant, repo)}packs/{pack}.{ext}" for ext in ("idx", "pack")]


def delete_objects(
    repos: Repositories, tenant: str, name: str, borrowed: list[tuple[str, str]]
) -> None:
    """After `name`'s refs are gone: its unheld objects, its holds, and the packs it
    alone kept alive."""
    objects = repos.objects
    held = {pack for pack in own_packs(objects, tenant, name) if _held(objects, tenant, name, pack)}
    freed = 0
    for info in objects.list_info(repo_prefix(tenant, name)):
        pack = info.key.rpartition("/")[2].rpartition(".")[0]
        if pack not in held:
            objects.delete(info.key)
            freed += info.size
    for source, pack in borrowed:
        objects.delete(hold_prefix(tenant, source, pack) + name)
        if not repos.refs.repo_exists(tenant, source) and not _held(objects, tenant, source, pack):
            for info in objects.list_info(f"{repo_prefix(tenant, source)}packs/{pack}."):
                objects.delete(info.key)
                freed += info.size
    # Coarse, after the objects went (a crash in between leaves the count high).
    repos.refs.add_repo_bytes(tenant, -freed)


def _held(objects: ObjectStore, tenant: str, repo: str, pack: str) -> bool:
    return bool(objects.list(hold_prefix(tenant, repo, pack)))


class RepoCopies:
    def __init__(self, repositories: Repositories) -> None:
        self._repos = repositories

    def fork(self, tenant: str, name: str, source: str) -> None:
        """`name` as a fork of `source` (RepoNotFound if absent), sharing its packs."""
        if name == source:
            raise InvalidParameter("A repository cannot be a fork of itself.")
        objects = self._repos.objects
        with self._repos.open(tenant, source) as src:
            refs = dict(src.refs.snapshot())
            borrowed = [*src.refs.borrowed]
        borrowed += [(source, pack) for pack in own_packs(objects, tenant, source)]
        if len(borrowed) > MAX_BORROWED_PACKS:
            raise PayloadTooLarge(
                f"Repository '{source}' has {len(borrowed)} packs; a fork shares at most "
                f"{MAX_BORROWED_PACKS}."
            )
        if self._repos.refs.repo_exists(tenant, name):
            raise RepoAlreadyExists(tenant, name)
        holds = [hold_prefix(tenant, repo, pack) + name for repo, pack in borrowed]
        # Kept on failure: a repository of this name created meanwhile may hold them.
        held_before = {key for key in holds if objects.exists(key)}
        for key in holds:
            objects.put(key, b"")
        if borrowed:
            refs[BORROWED_PACKS_REF] = format_borrowed(borrowed)
        try:
            self._repos.refs.create_repo(tenant, name, refs)
        except BaseException:
            for key in set(holds) - held_before:
                objects.delete(key)
            raise
        missing = [
            (repo, pack)
            for repo, pack in borrowed
            if not objects.exists(_pack_keys(tenant, repo, pack)[0])
        ]
        if missing:
            # A pack was deleted before its hold landed: undo rather than leave a fork
            # whose objects are gone.
            self._repos.refs.delete_repo(tenant, name)
            delete_objects(self._repos, tenant, name, borrowed)
            raise Conflict(f"Repository '{source}' changed while being forked; try again.")
        log.info("forked %s/%s from %s (%d packs shared)", tenant, name, source, len(borrowed))

    def import_bundle(self, tenant: str, name: str, encoded: str) -> None:
        """`name` holding a Git bundle's objects and refs (v2 or v3, no prerequisites)."""
        data = _decode(encoded)
        refs = _bundle_refs(data)
        if self._repos.refs.repo_exists(tenant, name):
            raise RepoAlreadyExists(tenant, name)
        objects = self._repos.objects
        before = set(objects.list(repo_prefix(tenant, name)))
        store = self._repos.open_objects(tenant, name)
        try:
            pack = BytesIO(data[data.index(b"\n\n") + 2 :])
            try:
                store.add_thin_pack(pack.read, None)
            except Exception as exc:  # dulwich raises many kinds for a corrupt pack
                raise InvalidParameter(f"The bundle's pack is invalid: {exc}") from None
            for ref, sha in refs.items():
                if ObjectID(sha) not in store:
                    raise InvalidParameter(
                        f"The bundle's ref {ref.decode()} names {sha.decode()}, which is not "
                        "in its pack."
                    )
            self._repos.refs.create_repo(tenant, name, refs)
        except BaseException:
            # Nothing of a refused import stays: its pack would show up in a repository
            # created later under this name.
            for key in set(objects.list(repo_prefix(tenant, name))) - before:
                objects.delete(key)
            raise
        finally:
            store.close()
        log.info("imported %s/%s from a bundle (%d refs)", tenant, name, len(refs))


def _decode(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter("bundle is not valid base64.") from None


def _bundle_refs(data: bytes) -> dict[bytes, bytes]:
    """The refs to create from a bundle's header; InvalidParameter for anything else."""
    if not data.startswith((b"# v2 git bundle\n", b"# v3 git bundle\n")):
        raise InvalidParameter("bundle is not a Git bundle (v2 or v3: `git bundle create`).")
    try:
        bundle = read_bundle(BytesIO(data))
    except Exception as exc:  # a malformed header raises ValueError, KeyError, ...
        raise InvalidParameter(f"bundle is malformed: {exc}") from None
    with bundle:
        if bundle.prerequisites:
            raise InvalidParameter(
                f"The bundle needs {len(bundle.prerequisites)} commit(s) it does not contain "
                "(an incremental bundle): import a complete one (`git bundle create f --all`)."
            )
        refs: dict[bytes, bytes] = {}
        for ref, sha in bundle.references.items():
            if not ref.startswith(b"refs/"):
                continue  # HEAD: a repository's HEAD names main until set otherwise
            if len(sha) != 40:
                raise InvalidParameter(f"The bundle's ref {ref!r} has an invalid id.")
            refs[bytes(ref)] = bytes(ObjectID(sha))
    if not refs:
        raise InvalidParameter("The bundle has no refs under refs/ to import.")
    return refs
