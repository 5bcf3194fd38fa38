"""Function code in Git: uploads mirrored into the tenant's `functions` repository, and
deploys read from any repository ref.

Every code upload (CreateFunction, UpdateFunctionCode, a deploy) becomes one commit on
`main` of the tenant's `functions` repository that makes `functions/<name>/` exactly the
package's files, so a version's `commit_sha` names a tree anyone can `git clone` and
diff. Each commit is a snapshot of the whole directory, computed against the tip it is
committed on (compare-and-swap): whatever other writers do to the branch, the commit a
version records holds that version's code and nothing else under `functions/<name>/`.

Executable bits are not carried: the sandbox makes tenant code read-only and
non-executable anyway (`LocalCodeStore.unpacked`), so they would mean nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import stat
import threading
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from treadle.artifacts.edits import check_path
from treadle.artifacts.ports import ZERO_SHA, RepoNotFound
from treadle.artifacts.service import ArtifactService, TreeEntry
from treadle.domain.errors import (
    AlreadyExists,
    ConcurrentModification,
    Conflict,
    InvalidCode,
    InvalidParameter,
    NotFound,
)
from treadle.domain.ports import MAX_UNZIPPED_BYTES

FUNCTIONS_REPO = "functions"
BRANCH = "main"
AUTHOR = "Treadle <treadle@localhost>"
_TENANT_STRIPES = 64
_ATTEMPTS = 5  # re-reads of the branch when another writer moved it meanwhile
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same tree zips to the same bytes


def function_dir(name: str) -> str:
    """Where a function's code lives in the `functions` repository (no trailing slash)."""
    return f"functions/{name}"


def git_blob_sha(data: bytes) -> str:
    """The sha Git gives `data` as a blob: compares a file with a tree entry unread."""
    header = b"blob %d\x00" % len(data)
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()


# -- zip packages ----------------------------------------------------------------------


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _normalize(name: str) -> str:
    """The path the sandbox extracts an entry to, or InvalidCode if it is unsafe.

    Empty and `.` segments are dropped, as `ZipFile.extractall` drops them; what would
    leave the package (absolute paths, `..`) or shadow Git's own data (`.git`) is refused.
    """
    if name.startswith("/") or "\x00" in name:
        raise InvalidCode(f"Unsafe path in code package: {name}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InvalidCode(f"Unsafe path in code package: {name}")
    if any(p.lower() == ".git" for p in parts):
        raise InvalidCode(f"Path in code package uses the reserved name '.git': {name}")
    return "/".join(parts)


def _check_entries(infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    entries: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidCode(f"Symbolic link in code package: {info.filename} (store the file).")
        path = _normalize(info.filename)
        if path in entries:
            raise InvalidCode(f"Duplicate path in code package: {path}")
        entries[path] = info
        total += info.file_size  # declared sizes; reads never return more than declared
    if total > MAX_UNZIPPED_BYTES:
        raise InvalidCode(f"Unzipped code size exceeds {MAX_UNZIPPED_BYTES} bytes.")
    if not entries:
        raise InvalidCode("The code package contains no files.")
    for path in entries:
        for ancestor in _ancestors(path):
            if ancestor in entries:
                raise InvalidCode(
                    f"'{ancestor}' is both a file and a directory in the code package."
                )
    return entries


# Bad CRC, encryption, an unknown compression method, truncated data: what reading one
# entry of an archive that opened can still raise.
_UNREADABLE = (
    zipfile.BadZipFile,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    EOFError,
    ValueError,
)


def unpack_zip(zip_bytes: bytes) -> dict[str, bytes]:
    """The package's files by normalized path; InvalidCode for anything unusable."""
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
            entries = _check_entries([i for i in zf.infolist() if not i.is_dir()])
            files: dict[str, bytes] = {}
            for path, info in entries.items():
                try:
                    files[path] = zf.read(info)
                except _UNREADABLE as exc:
                    raise InvalidCode(
                        f"Cannot read {info.filename} in code package: {exc}"
                    ) from None
            return files
    except zipfile.BadZipFile:
        raise InvalidCode("Could not unzip uploaded file. Please check your file.") from None


def build_zip(files: Mapping[str, bytes]) -> bytes:
    """A deterministic zip of `files`: the same tree always gives the same CodeSha256."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the mode below is read as one
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, files[path])
    return buf.getvalue()


# -- reading trees -----------------------------------------------------------------------


def _walk(
    artifacts: ArtifactService, tenant: str, repo: str, sha: str, path: str
) -> Iterator[TreeEntry]:
    """Every non-directory entry under `path` at commit `sha`, depth first.

    One `read_tree` per directory: fine for function code (tens of directories); a
    recursive tree read in ArtifactService would save the round trips for big trees.
    """
    for entry in artifacts.read_tree(tenant, repo, sha, path):
        if entry.kind == "directory":
            yield from _walk(artifacts, tenant, repo, sha, entry.path)
        else:
            yield entry


@dataclass(frozen=True)
class SourceTree:
    repository: str
    ref: str
    path: str  # normalized: no leading or trailing slash, "" for the root
    commit_sha: str  # what `ref` resolved to
    files: dict[str, bytes]  # relative to `path`


def read_source(
    artifacts: ArtifactService, tenant: str, repo: str, ref: str, path: str
) -> SourceTree:
    """The files of directory `path` at `ref`, read at one resolved commit.

    NotFound for a missing repository, ref or path; InvalidParameter for a path that is
    not a directory or a tree holding symlinks or submodules (a zip cannot carry them).
    """
    norm = path.strip("/")
    if norm:
        check_path(norm)
    # Resolve once: a branch moving during the read must not mix two trees.
    commit = artifacts.log(tenant, repo, ref, 1)[0].sha
    where = f"in repository '{repo}' at '{ref}' ({commit})"
    try:
        entries = list(_walk(artifacts, tenant, repo, commit, norm))
    except RepoNotFound:
        raise
    except NotFound:
        raise NotFound(f"Path '{norm}' does not exist {where}.") from None
    except InvalidParameter:
        raise InvalidParameter(
            f"Path '{norm}' {where} is not a directory: deploy the directory holding the code."
        ) from None
    files: dict[str, bytes] = {}
    total = 0
    cut = len(norm) + 1 if norm else 0
    for entry in entries:
        if entry.kind != "file":
            raise InvalidParameter(
                f"'{entry.path}' {where} is a {entry.kind}; code packages hold only files."
            )
        data = artifacts.read_blob(tenant, repo, commit, entry.path)
        total += len(data)
        if total > MAX_UNZIPPED_BYTES:
            raise InvalidCode(f"Code under '{norm}' {where} exceeds {MAX_UNZIPPED_BYTES} bytes.")
        files[entry.path[cut:]] = data
    if not files:
        raise InvalidParameter(f"Path '{norm}' {where} holds no files.")
    return SourceTree(repo, ref, norm, commit, files)


# -- the mirror ------------------------------------------------------------------------


class CodeMirror:
    """Keeps `functions/<name>/` on `main` of the tenant's `functions` repository equal to
    the function's code, one commit per change (none when nothing changed)."""

    def __init__(self, artifacts: ArtifactService) -> None:
        self.artifacts = artifacts
        # Every upload of a tenant commits to the same branch: uploads of different
        # functions would race on its compare-and-swap and, under a burst, exhaust
        # their retries. Serialising them per tenant in this process makes the swap
        # succeed first time; retries remain for other processes and `git push`.
        self._tenant_locks = [threading.Lock() for _ in range(_TENANT_STRIPES)]

    def _tenant_lock(self, tenant: str) -> threading.Lock:
        return self._tenant_locks[hash(tenant) % _TENANT_STRIPES]

    def commit(self, tenant: str, name: str, files: Mapping[str, bytes], message: str) -> str:
        """Make `functions/<name>/` exactly `files`; the sha of a commit where it is."""
        with self._tenant_lock(tenant):
            return self._commit(tenant, name, files, message)

    def _commit(self, tenant: str, name: str, files: Mapping[str, bytes], message: str) -> str:
        prefix = function_dir(name)
        want = {path: git_blob_sha(data) for path, data in files.items()}
        for _attempt in range(_ATTEMPTS):
            tip = self._tip(tenant)
            existing = self._listing(tenant, tip, prefix)
            if tip is not None and existing == want:
                return tip  # already there: no empty commit
            if existing is None or _shape_changes(existing, want):
                # A file where a directory was (or the reverse) cannot be one edit of
                # the tree: clear the directory first, then write the files.
                tip = self._try_commit(
                    tenant, {prefix: None}, f"Clear {prefix}/ before: {message}", tip
                )
                if tip is None:
                    continue
                existing = {}
            changes: dict[str, bytes | None] = {
                f"{prefix}/{path}": files[path]
                for path in sorted(files)
                if existing.get(path) != want[path]
            }
            changes.update({f"{prefix}/{path}": None for path in existing if path not in files})
            sha = self._try_commit(tenant, changes, message, tip)
            if sha is not None:
                return sha
        raise ConcurrentModification(
            f"Repository '{FUNCTIONS_REPO}' kept changing while the code of '{name}' was "
            "committed; retry."
        )

    def remove(self, tenant: str, name: str, message: str) -> str | None:
        """Delete `functions/<name>/` (a deleted function); the commit, or None if absent."""
        with self._tenant_lock(tenant):
            return self._remove(tenant, name, message)

    def _remove(self, tenant: str, name: str, message: str) -> str | None:
        prefix = function_dir(name)
        for _attempt in range(_ATTEMPTS):
            tip = self._tip(tenant, create=False)
            if tip is None or self._listing(tenant, tip, prefix) == {}:
                return None
            sha = self._try_commit(tenant, {prefix: None}, message, tip)
            if sha is not None:
                return sha
        raise ConcurrentModification(f"Repository '{FUNCTIONS_REPO}' kept changing; retry.")

    def _tip(self, tenant: str, *, create: bool = True) -> str | None:
        """The branch tip; the repository is created on first use if `create`."""
        try:
            refs = self.artifacts.refs(tenant, FUNCTIONS_REPO)
        except RepoNotFound:
            if not create:
                return None
            # AlreadyExists: a concurrent upload created it first, which is just as good.
            with contextlib.suppress(AlreadyExists):
                self.artifacts.create_repo(tenant, FUNCTIONS_REPO)
            refs = self.artifacts.refs(tenant, FUNCTIONS_REPO)
        return refs.get(f"refs/heads/{BRANCH}")

    def _listing(self, tenant: str, tip: str | None, prefix: str) -> dict[str, str] | None:
        """Relative path -> blob sha of what is under `prefix` at `tip`; {} if absent,
        None if `prefix` is not a directory. Non-files get a value no blob sha equals,
        so they are always replaced or deleted."""
        if tip is None:
            return {}
        try:
            return {
                entry.path[len(prefix) + 1 :]: (
                    entry.sha if entry.kind == "file" else f"{entry.kind}:{entry.sha}"
                )
                for entry in _walk(self.artifacts, tenant, FUNCTIONS_REPO, tip, prefix)
            }
        except NotFound:  # includes a repository deleted meanwhile: the commit retries
            return {}
        except InvalidParameter:
            return None

    def _try_commit(
        self, tenant: str, changes: Mapping[str, bytes | None], message: str, parent: str | None
    ) -> str | None:
        """The new commit, or None if the branch moved (or the repository vanished)."""
        try:
            return self.artifacts.commit_files(
                tenant,
                FUNCTIONS_REPO,
                BRANCH,
                changes,
                message,
                AUTHOR,
                expected_parent=parent or ZERO_SHA.decode(),
            )
        except (Conflict, RepoNotFound):
            return None
        except InvalidParameter as exc:
            # The paths were validated: what is refused is the repository's content
            # (say a file named `functions` pushed by hand).
            raise Conflict(
                f"Cannot commit the code to repository '{FUNCTIONS_REPO}': {exc.message}"
            ) from None


def _shape_changes(existing: Mapping[str, str], want: Mapping[str, str]) -> bool:
    """Whether a path turns from file to directory or back."""
    old_dirs = {a for path in existing for a in _ancestors(path)}
    new_dirs = {a for path in want for a in _ancestors(path)}
    return any(path in old_dirs for path in want) or any(path in new_dirs for path in existing)


# -- deploy requests -----------------------------------------------------------------------


class DeployDurableConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    executionTimeout: int | None = Field(default=None, ge=1, le=31_622_400)
    retentionPeriodInDays: int | None = Field(default=None, ge=1, le=90)


class DeployRequest(BaseModel):
    """`POST /v1/functions/<name>/deploy`: publish a version from a repository tree.

    Configuration left out keeps the function's current value (or Lambda's default
    when the deploy creates the function).
    """

    model_config = ConfigDict(extra="forbid")
    repo: str = Field(min_length=1, max_length=100)
    ref: str = Field(default="main", min_length=1, max_length=256)
    path: str = Field(default="", max_length=4096, description="Directory; '' is the root.")
    handler: str = Field(min_length=1, max_length=128, pattern=r"^[^\s]+$")
    runtime: str | None = None
    timeout: int | None = Field(default=None, ge=1, le=900)
    memorySize: int | None = Field(default=None, ge=128, le=10240)
    environment: dict[str, str] | None = None
    durableConfig: DeployDurableConfig | None = None
    description: str | None = Field(default=None, max_length=256)
