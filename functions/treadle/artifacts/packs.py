"""A dulwich object store whose packs live in an `ObjectStore` (a directory, S3).

`dulwich.object_store.BucketBasedObjectStore` is dulwich's base for exactly this (its
GCS store uses it): a pack-only store (no loose objects) that lists, loads and uploads
`.pack`/`.idx` pairs. We add what a server needs on top: `add_thin_pack` (what
receive-pack calls for a push), checksum-named packs, and a shared cache of pack bytes.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from io import BytesIO
from typing import BinaryIO, cast

from dulwich.object_store import BucketBasedObjectStore
from dulwich.objects import RawObjectID, sha_to_hex
from dulwich.pack import (
    PACK_SPOOL_FILE_MAX_SIZE,
    Pack,
    PackData,
    PackIndex,
    PackIndexer,
    PackInflater,
    PackStreamCopier,
    extend_pack,
    load_pack_index_file,
    write_pack_index,
)

from treadle.artifacts.ports import ObjectStore, pack_key, repo_prefix

log = logging.getLogger(__name__)

PackEntry = tuple[RawObjectID, int, int | None]


class PackCache:
    """Process-wide LRU of pack and index bytes, bounded in total size.

    Packs are named by their checksum, so a key's bytes never change: entries can be
    shared by every repository handle and every thread without invalidation. Each
    request builds fresh dulwich `Pack` objects over these bytes (dulwich's objects
    keep mutable caches and are not meant to be shared across threads).
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: ObjectStore, key: str) -> bytes:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                return data
        data = store.get(key)  # outside the lock: may be a network round trip
        self.put(key, data)
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self._max // 4:
            return  # one huge pack must not flush everything else
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self._size += len(data)
            while self._size > self._max:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)


class PackObjectStore(BucketBasedObjectStore):
    """The objects of one repository: the packs under its key prefix."""

    def __init__(
        self,
        store: ObjectStore,
        tenant: str,
        repo: str,
        cache: PackCache,
        borrowed: Sequence[tuple[str, str]] = (),
        on_stored: Callable[[int], None] | None = None,
    ) -> None:
        """`borrowed`: (repository, pack name) of packs of other repositories of the
        tenant this one reads too (a fork's); they are never written nor removed here.
        `on_stored(bytes)`: after a new pack and its index are stored (usage)."""
        super().__init__()
        self._on_stored = on_stored
        self._store = store
        self._tenant = tenant
        self._repo = repo
        self._cache = cache
        self._borrowed = [f"{r}/{n}" for r, n in borrowed]
        self._packs_prefix = f"{repo_prefix(tenant, repo)}packs/"

    def __repr__(self) -> str:
        return f"PackObjectStore({self._packs_prefix!r})"

    def _key(self, name: str, ext: str) -> str:
        repo, _, own = name.rpartition("/")  # "<repo>/<name>": a borrowed pack
        return pack_key(self._tenant, repo or self._repo, own, ext)

    def _iter_pack_names(self) -> Iterator[str]:
        exts: dict[str, set[str]] = {}
        for key in self._store.list(self._packs_prefix):
            name, _, ext = key[len(self._packs_prefix) :].rpartition(".")
            exts.setdefault(name, set()).add(ext)
        # The index is uploaded after the pack: a name is complete once both exist.
        own = sorted(n for n, e in exts.items() if {"pack", "idx"} <= e)
        return iter([*own, *self._borrowed])

    def _get_pack(self, name: str) -> Pack:
        def load_data() -> PackData:
            data = self._cache.get(self._store, self._key(name, "pack"))
            return PackData(name + ".pack", self.object_format, file=BytesIO(data))

        def load_index() -> PackIndex:
            data = self._cache.get(self._store, self._key(name, "idx"))
            return load_pack_index_file(name + ".idx", BytesIO(data), self.object_format)

        return Pack.from_lazy_objects(load_data, load_index)

    def _remove_pack_by_name(self, name: str) -> None:
        if "/" in name:
            return  # another repository's pack, only borrowed
        # Index first: the pack stops being listed before its data goes.
        self._store.delete(self._key(name, "idx"))
        self._store.delete(self._key(name, "pack"))

    def add_pack(self) -> tuple[BinaryIO, Callable[[], None], Callable[[], None]]:
        """A file to write a complete pack into, and its commit and abort functions.

        Replaces the base class's version, which reads every existing pack to look for
        a duplicate (a download of the whole repository on S3) and names packs by
        their object set (two different packs of the same objects would then share
        one name, and a racing upload could pair one's index with the other's data).
        """
        # Not a `with`: the file goes to the caller, and commit() or abort closes it.
        spooled = tempfile.SpooledTemporaryFile(max_size=PACK_SPOOL_FILE_MAX_SIZE)  # noqa: SIM115
        f = cast(BinaryIO, spooled)

        def commit() -> Pack | None:
            try:
                if f.tell() == 0:
                    return None
                f.seek(0)
                with PackData("new.pack", self.object_format, file=f) as data:
                    entries = data.sorted_entries()
                    checksum = data.get_stored_checksum()
                return self._publish(f, entries, checksum, validate=False)
            finally:
                f.close()

        return f, commit, f.close  # type: ignore[return-value]  # dulwich's own signature

    def add_thin_pack(
        self,
        read_all: Callable[[int], bytes],
        read_some: Callable[[int], bytes] | None,
        progress: Callable[..., None] | None = None,
        *,
        max_input_size: int | None = None,  # the caller already bounds the request body
    ) -> Pack | None:
        """Ingest a pack from the wire, completing it with the bases it deltas against.

        Follows `DiskObjectStore.add_thin_pack`, but into a temporary file that is then
        uploaded; returns None for a pack without objects.
        """
        with tempfile.SpooledTemporaryFile(max_size=PACK_SPOOL_FILE_MAX_SIZE) as spooled:
            f = cast(BinaryIO, spooled)
            indexer = PackIndexer(f, self.object_format.hash_func, resolve_ext_ref=self.get_raw)
            copier = PackStreamCopier(
                self.object_format.hash_func,
                read_all,
                read_some,
                f,
                delta_iter=indexer,  # type: ignore[arg-type]
            )
            copier.verify(progress=progress)
            f.flush()
            f.seek(0)
            with PackData("incoming.pack", self.object_format, file=f) as data:
                indexer.set_pack_data(data)
                entries: list[PackEntry] = list(indexer)
                ext_refs = set(indexer.ext_refs())
            if not entries:
                return None
            checksum, extra = extend_pack(
                f,
                ext_refs,
                get_raw=self.get_raw,
                object_format=self.object_format,
                compression_level=self.pack_compression_level,
            )
            entries.extend(extra)
            entries.sort()
            return self._publish(f, entries, checksum, validate=True)

    def _publish(
        self, f: BinaryIO, entries: Sequence[PackEntry], checksum: bytes, *, validate: bool
    ) -> Pack:
        """Upload a complete pack and its index, then make it visible to this handle."""
        f.seek(0)
        pack_bytes = f.read()
        if validate:
            # Parse every object before anything points at it: a client must not be able
            # to store a tree or commit that later breaks every clone (git's fsck).
            with PackData("check.pack", self.object_format, file=BytesIO(pack_bytes)) as data:
                for _ in PackInflater.for_pack_data(data):
                    pass
        index = BytesIO()
        write_pack_index(index, entries, checksum, version=self.pack_index_version)
        name = sha_to_hex(RawObjectID(checksum)).decode("ascii")
        pack_key_, idx_key = self._key(name, "pack"), self._key(name, "idx")
        # Same name, same bytes (the name is the checksum): an existing pair is complete.
        if not self._store.exists(idx_key):
            self._store.put(pack_key_, pack_bytes)
            self._store.put(idx_key, index.getvalue())
            log.debug(
                "stored pack %s (%d objects, %d bytes)", pack_key_, len(entries), len(pack_bytes)
            )
            if self._on_stored is not None:
                self._on_stored(len(pack_bytes) + len(index.getvalue()))
        self._cache.put(pack_key_, pack_bytes)
        self._cache.put(idx_key, index.getvalue())
        pack = self._get_pack(name)
        self._add_cached_pack(name, pack)
        return pack
