"""Reclaiming a repository's Git objects that no ref reaches any more (a deleted branch,
an abandoned import): a repack of its own old packs.

The objects of the packs older than the grace period that are still reachable from the
refs go into one new pack, stored first; then those old packs are removed (index first,
so a pack stops being listed before its data goes). Readers meanwhile see an object in
both, never in neither.

Why a grace period rather than a lock: a push stores its pack before its refs move
(`receive.py`), so a pack written in the last `grace_ms` may belong to a push whose
refs have not moved yet; such packs are never touched. Packs a fork holds are never
removed either (`forks.py`), and a fork's borrowed packs are not its own. The refs are
read after the packs are listed, so any push whose refs moved before that has its
objects counted as reachable.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass

from dulwich.objects import Commit, ObjectID, RawObjectID, ShaFile, Tag, Tree, sha_to_hex

from treadle.artifacts.forks import own_packs
from treadle.artifacts.ports import ObjectInfo, hold_prefix, repo_prefix
from treadle.artifacts.repository import Repositories

log = logging.getLogger(__name__)

DEFAULT_GRACE_MS = 3_600_000
_HEX = frozenset(b"0123456789abcdef")


@dataclass(frozen=True)
class ObjectsReport:
    repo: str
    unreachable: int  # objects of old packs that no ref reaches
    packs_removed: int
    bytes_freed: int  # the old packs' bytes minus the new pack's (0 for a dry run)


def collect_objects(
    repos: Repositories,
    tenant: str,
    repo: str,
    now_ms: int,
    *,
    grace_ms: int = DEFAULT_GRACE_MS,
    dry_run: bool = False,
    min_packs: int = 1,
) -> ObjectsReport | None:
    """Repack `repo`'s old packs without their unreachable objects; None when there is
    nothing to reclaim. RepoNotFound if the repository is gone.

    `min_packs`: look only when at least that many old packs could go. A look reads the
    packs (downloads, on S3), so the periodic run asks for 2: a repository repacked
    into one pack and unchanged since costs one listing, not a download."""
    objects = repos.objects
    prefix = f"{repo_prefix(tenant, repo)}packs/"
    infos = {i.key: i for i in objects.list_info(prefix)}
    candidates: dict[str, list[ObjectInfo]] = {}
    for name in own_packs(objects, tenant, repo):
        pair = [infos[k] for k in (f"{prefix}{name}.idx", f"{prefix}{name}.pack") if k in infos]
        old_enough = len(pair) == 2 and max(i.modified_ms for i in pair) < now_ms - grace_ms
        if old_enough and not objects.list(hold_prefix(tenant, repo, name)):
            candidates[name] = pair
    if not candidates or len(candidates) < min_packs:
        return None
    with repos.open(tenant, repo) as r:
        store = r.object_store
        # Read after the listing: a push whose refs moved before is reachable here.
        wants = [v for v in r.refs.snapshot(fresh=True).values() if _is_sha(v)]
        contents: dict[str, set[bytes]] = {}
        for name in candidates:
            index = store._get_pack(name).index  # our own subclass's loader
            contents[name] = {sha_to_hex(RawObjectID(e[0])) for e in index.iterentries()}
        reachable = _reachable(store, wants, set().union(*contents.values()))
        # Only packs holding garbage are rewritten: a pack all reachable stays as it is
        # (and the new pack, missing an object of each, can never be one of them).
        candidates = {n: p for n, p in candidates.items() if contents[n] - reachable}
        old: set[bytes] = set().union(*(contents[n] for n in candidates))
        unreachable = old - reachable
        if not unreachable:
            return None
        if dry_run:
            return ObjectsReport(repo, len(unreachable), 0, 0)
        keep: list[tuple[ShaFile, str | None]] = [
            (store[ObjectID(sha)], None) for sha in sorted(old & reachable)
        ]
        if keep:
            store.add_objects(keep)  # counted by the store's own `on_stored`
        added = sum(i.size for i in objects.list_info(prefix) if i.key not in infos)
    removed = 0
    for name, pair in candidates.items():
        if objects.list(hold_prefix(tenant, repo, name)):
            continue  # a fork took hold of it meanwhile
        for info in sorted(pair, key=lambda i: not i.key.endswith(".idx")):
            objects.delete(info.key)
            removed += info.size
    repos.refs.add_repo_bytes(tenant, -removed)
    log.info(
        "repacked %s/%s: %d unreachable objects, %d packs, %d bytes freed",
        tenant,
        repo,
        len(unreachable),
        len(candidates),
        removed - added,
    )
    return ObjectsReport(repo, len(unreachable), len(candidates), removed - added)


def _is_sha(value: bytes) -> bool:
    return len(value) in (40, 64) and set(value) <= _HEX


def _reachable(store: object, wants: list[bytes], among: set[bytes]) -> set[bytes]:
    """Every object reachable from `wants`. Blobs are not read: reaching their id is
    enough; commits, trees and tags are (their links)."""
    seen: set[bytes] = set()
    stack = list(wants)
    while stack:
        sha = stack.pop()
        if sha in seen:
            continue
        seen.add(sha)
        try:
            obj = store[ObjectID(sha)]  # type: ignore[index]
        except KeyError:  # a ref at an object not held here: nothing below it to keep
            continue
        if isinstance(obj, Commit):
            stack.append(obj.tree)
            stack.extend(obj.parents)
        elif isinstance(obj, Tree):
            for entry in obj.iteritems():
                if stat.S_ISDIR(entry.mode):
                    stack.append(entry.sha)
                elif entry.mode & 0o170000 != 0o160000:  # not a submodule's commit
                    seen.add(entry.sha)
        elif isinstance(obj, Tag):
            stack.append(obj.object[1])
    return seen
