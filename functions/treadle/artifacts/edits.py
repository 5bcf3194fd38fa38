"""Turning a `{path: bytes | None}` request into a new Git tree, with dulwich.

Validation is strict and up front so errors name the offending path; the tree itself is
built by `dulwich.object_store.commit_tree_changes` into a staging store, so a commit's
new blobs, trees and the commit itself reach the object store as one pack.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping

from dulwich.object_store import (
    BaseObjectStore,
    MemoryObjectStore,
    OverlayObjectStore,
    commit_tree_changes,
)
from dulwich.objects import S_ISGITLINK, Blob, ObjectID, ShaFile, Tree

from treadle.domain.errors import InvalidParameter

_MAX_PATH = 4096
_FILE_MODE = 0o100644
_EXEC_MODE = 0o100755


def check_path(path: str, *, what: str = "path") -> bytes:
    """A repository-relative file path as Git stores it (UTF-8, `/`-separated)."""
    if not isinstance(path, str) or not path:
        raise InvalidParameter(f"Invalid {what} {path!r}: must be a non-empty string.")
    if len(path) > _MAX_PATH or "\x00" in path:
        raise InvalidParameter(f"Invalid {what} {path!r}: too long or contains NUL.")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidParameter(
                f"Invalid {what} {path!r}: use relative paths without empty, '.' or '..' parts."
            )
        if segment.lower() == ".git":
            raise InvalidParameter(f"Invalid {what} {path!r}: '.git' is reserved.")
    return path.encode("utf-8")


def _lookup(store: BaseObjectStore, tree: Tree, path: bytes) -> tuple[int, ObjectID] | None:
    """(mode, sha) of `path` in `tree`, or None if absent or under a non-directory."""
    node = tree
    parts = path.split(b"/")
    for i, part in enumerate(parts):
        try:
            mode, sha = node[part]
        except KeyError:
            return None
        if i == len(parts) - 1:
            return mode, sha
        if not stat.S_ISDIR(mode):
            return None
        child = store[sha]
        assert isinstance(child, Tree)
        node = child
    return None


def stage_tree(
    store: BaseObjectStore, base: Tree, files: Mapping[str, bytes | None]
) -> tuple[ObjectID, MemoryObjectStore]:
    """The new root tree id, and a store holding every object it adds.

    Deleting a directory path deletes the directory. Writing a file keeps an existing
    file's executable bit. Refused, with the path named: deleting what does not exist,
    writing over a directory, writing under a file (unless that file is deleted in the
    same edit), and writing both `a` and `a/b`.
    """
    if not files:
        raise InvalidParameter("files must name at least one path to write or delete.")
    encoded = {check_path(p, what="file path"): content for p, content in files.items()}
    deleted = {p for p, content in encoded.items() if content is None}
    written = {p for p, content in encoded.items() if content is not None}
    staging = MemoryObjectStore()
    changes: list[tuple[bytes, int | None, ObjectID | None]] = []
    for path, content in sorted(encoded.items()):
        shown = path.decode()
        existing = _lookup(store, base, path)
        if content is None:
            if existing is None:
                raise InvalidParameter(
                    f"Cannot delete '{shown}': it does not exist in the parent commit."
                )
            if not any(a in deleted for a in _ancestors(path)):  # else already gone
                changes.append((path, None, None))
            continue
        if not isinstance(content, bytes | bytearray):
            raise InvalidParameter(f"Content of '{shown}' must be bytes or None (to delete).")
        if existing is not None and stat.S_ISDIR(existing[0]):
            raise InvalidParameter(
                f"Cannot write '{shown}': it is a directory in the parent commit "
                "(delete it in the same commit to replace it)."
            )
        _check_ancestors(store, base, path, deleted, written)
        blob = Blob.from_string(bytes(content))
        staging.add_object(blob)
        keep_exec = existing is not None and existing[0] == _EXEC_MODE
        changes.append((path, _EXEC_MODE if keep_exec else _FILE_MODE, blob.id))
    overlay = OverlayObjectStore([staging, store], add_store=staging)
    return commit_tree_changes(overlay, base, changes), staging


def _check_ancestors(
    store: BaseObjectStore, base: Tree, path: bytes, deleted: set[bytes], written: set[bytes]
) -> None:
    for ancestor in _ancestors(path):
        if ancestor in written:
            raise InvalidParameter(
                f"Cannot write both '{ancestor.decode()}' and '{path.decode()}': "
                "one would be a file and a directory at once."
            )
        if ancestor in deleted:
            return  # everything below it is replaced
        found = _lookup(store, base, ancestor)
        if found is not None and not stat.S_ISDIR(found[0]):
            kind = "a submodule" if S_ISGITLINK(found[0]) else "a file"
            raise InvalidParameter(
                f"Cannot write '{path.decode()}': '{ancestor.decode()}' is {kind} "
                "in the parent commit."
            )


def _ancestors(path: bytes) -> list[bytes]:
    """`a/b/c` -> [`a`, `a/b`]."""
    parts = path.split(b"/")
    return [b"/".join(parts[:i]) for i in range(1, len(parts))]


def staged_objects(staging: MemoryObjectStore) -> list[tuple[ShaFile, str | None]]:
    """The staged objects in the shape `add_objects` takes."""
    return [(staging[sha], None) for sha in staging]
