"""`git push`, server side: dulwich's receive-pack with safe ref updates.

dulwich's `ReceivePackHandler` parses the commands, reads the pack and reports status;
we keep all of that and replace only `_apply_pack`, because its ref updates ignore a
failed `set_if_equals` (reporting `ok` for a push that lost a race) and accept
non-fast-forwards. Here, like git-receive-pack with `receive.denyNonFastForwards`:

- each command is checked first: well-formed name, objects present and connected
  (no ref may point at history with holes), and a branch may only fast-forward from
  the old value the client names;
- then the ref moves by a compare-and-swap from that old value. A push that raced
  another one is refused for that ref (`non-fast-forward` when accepting it would drop
  the other push's commits), never applied over it: no pushed commit is ever lost.
- `--atomic` pushes become one compare-and-swap of all their refs.
"""

from __future__ import annotations

import logging
import socket
import zlib
from collections.abc import Iterator, Sequence

from dulwich.errors import ApplyDeltaError, ChecksumMismatch, ObjectFormatException
from dulwich.graph import can_fast_forward
from dulwich.object_store import MissingObjectFinder
from dulwich.objects import Commit, ObjectID
from dulwich.protocol import CAPABILITY_ATOMIC
from dulwich.refs import Ref, check_ref_format
from dulwich.server import ReceivePackHandler

from treadle.artifacts.ports import ZERO_SHA, RefConflict, RefUpdate, is_zero
from treadle.artifacts.repository import ArtifactRepo
from treadle.domain.audit import pending_record

log = logging.getLogger(__name__)

Command = tuple[ObjectID, ObjectID, Ref]  # (old, new, ref) as on the wire

_UNPACK_ERRORS = (
    OSError,
    socket.error,
    zlib.error,
    ChecksumMismatch,
    ApplyDeltaError,
    ObjectFormatException,
    AssertionError,
    KeyError,  # a thin pack deltas against an object this repository lacks
    ValueError,
)


class GuardedReceivePackHandler(ReceivePackHandler):
    def _apply_pack(self, refs: list[Command]) -> Iterator[tuple[bytes, bytes]]:
        repo = self.repo
        assert isinstance(repo, ArtifactRepo)
        if any(not is_zero(new) for _old, new, _ref in refs):
            try:
                repo.object_store.add_thin_pack(self.proto.read, getattr(self.proto, "recv", None))
            except _UNPACK_ERRORS as exc:
                log.warning("push to %s/%s: bad pack: %s", repo.tenant, repo.name, exc)
                yield (b"unpack", str(exc).replace("\n", " ").encode("utf-8", "replace"))
                for _old, _new, ref in refs:
                    yield (ref, b"unpacker error")
                return
        yield (b"unpack", b"ok")
        yield from apply_ref_updates(repo, refs, atomic=self.has_capability(CAPABILITY_ATOMIC))


def apply_ref_updates(
    repo: ArtifactRepo, commands: Sequence[Command], *, atomic: bool
) -> list[tuple[bytes, bytes]]:
    """(ref, status) per command, `ok` or git's reason for refusing it."""
    haves = [ObjectID(v) for v in repo.refs.snapshot().values() if not v.startswith(b"ref: ")]
    refused = {
        ref: why for old, new, ref in commands if (why := _refusal(repo, old, new, ref, haves))
    }
    names = [ref for _o, _n, ref in commands]
    for ref in {r for r in names if names.count(r) > 1}:
        refused[ref] = b"ref updated twice in one push"  # git clients never send this
    statuses: list[tuple[bytes, bytes]]
    if atomic:
        if refused:
            statuses = [(ref, refused.get(ref, b"atomic push failed")) for _o, _n, ref in commands]
        else:
            try:
                repo.compare_and_swap(
                    [RefUpdate(ref, old, new) for old, new, ref in commands],
                    audit=pending_record(),
                )
                statuses = [(ref, b"ok") for _o, _n, ref in commands]
            except RefConflict as conflict:
                why = _race_message(repo, conflict, commands)
                statuses = [
                    (ref, why if ref == conflict.ref else b"atomic push failed")
                    for _o, _n, ref in commands
                ]
    else:
        statuses = []
        for old, new, ref in commands:
            if ref in refused:
                statuses.append((ref, refused[ref]))
                continue
            try:
                # The push's record rides with its first ref update.
                repo.compare_and_swap([RefUpdate(ref, old, new)], audit=pending_record())
                statuses.append((ref, b"ok"))
            except RefConflict as conflict:
                statuses.append((ref, _race_message(repo, conflict, commands)))
    for name, status in statuses:
        log.info(
            "push %s/%s %s: %s",
            repo.tenant,
            repo.name,
            name.decode(errors="replace"),
            status.decode(errors="replace"),
        )
    return statuses


def _refusal(
    repo: ArtifactRepo, old: ObjectID, new: ObjectID, ref: Ref, haves: list[ObjectID]
) -> bytes | None:
    """Why git-receive-pack would refuse this command before touching the ref, if so."""
    if not ref.startswith(b"refs/") or not check_ref_format(ref):
        return b"funny refname"
    if is_zero(new):
        return None
    if _first_missing(repo, new, haves) is not None:
        return b"missing necessary objects"
    if ref.startswith(b"refs/heads/"):
        if not isinstance(repo.object_store[new], Commit):
            return b"branch must point at a commit"
        if not is_zero(old) and old in repo.object_store and not can_fast_forward(repo, old, new):
            return b"non-fast-forward"
    return None


def _first_missing(repo: ArtifactRepo, new: ObjectID, haves: list[ObjectID]) -> ObjectID | None:
    """An object reachable from `new` but not from `haves` that the store lacks, if any.

    git's connectivity check after a push. dulwich's MissingObjectFinder walks exactly
    that set; it loads commits, trees and tags (KeyError if absent) and only lists
    blobs, so those are checked for presence here.
    """
    try:
        for sha, _hint in MissingObjectFinder(repo.object_store, haves=haves, wants=[new]):
            if sha not in repo.object_store:
                return sha
    except KeyError as exc:
        return ObjectID(exc.args[0]) if exc.args and isinstance(exc.args[0], bytes) else new
    return None


def _race_message(repo: ArtifactRepo, conflict: RefConflict, commands: Sequence[Command]) -> bytes:
    """The status of a command whose compare-and-swap lost to another update."""
    new = next((n for _o, n, r in commands if r == conflict.ref), ZERO_SHA)
    current = conflict.actual
    if current is not None and not is_zero(new) and conflict.ref.startswith(b"refs/heads/"):
        try:
            if not can_fast_forward(repo, ObjectID(current), ObjectID(new)):
                return b"non-fast-forward"
        except (KeyError, AssertionError):
            return b"non-fast-forward"
    return b"failed to update ref: it moved during the push; fetch and retry"
