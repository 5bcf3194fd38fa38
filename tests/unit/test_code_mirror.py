"""Code delivery in process: zip validation, the `functions` mirror, deploy-from-ref.

The same flows run end to end through `treadle dev` in
`tests/integration/test_code_delivery.py`; these cover the edge cases cheaply.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import stat
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.fakes import ManualClock, NoQuotas
from treadle.adapters.local.basics import RandomIds
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.app.code_delivery import (
    CodeMirror,
    DeployRequest,
    build_zip,
    read_source,
    unpack_zip,
)
from treadle.app.functions import (
    CreateFunctionRequest,
    FunctionCode,
    FunctionService,
    UpdateCodeRequest,
)
from treadle.artifacts import ArtifactService, Repositories
from treadle.domain.errors import AlreadyExists, Conflict, InvalidCode, InvalidParameter, NotFound

TENANT = "123456789012"
AUTHOR = "Ada <ada@example.com>"


def _zip(entries: Mapping[str, bytes | str], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


# -- zips ------------------------------------------------------------------------------


def test_unpack_normalizes_like_extractall_and_skips_directories() -> None:
    files = unpack_zip(_zip({"./handler.py": "h", "lib//util.py": "u", "lib/": ""}))
    assert files == {"handler.py": b"h", "lib/util.py": b"u"}


@pytest.mark.parametrize(
    ("package", "message"),
    [
        (_zip({"../evil.py": "x"}), "Unsafe path"),
        (_zip({"/etc/evil.py": "x"}), "Unsafe path"),
        (_zip({"a/../../evil.py": "x"}), "Unsafe path"),
        (_zip({".git/config": "x"}), "reserved name '.git'"),
        (_zip({"handler.py": "x"}, symlink="link.py"), "Symbolic link in code package: link.py"),
        (_zip({"lib": "x", "lib/util.py": "y"}), "'lib' is both a file and a directory"),
        (_zip({"a.py": "1", "./a.py": "2"}), "Duplicate path in code package: a.py"),
        (_zip({"empty/": ""}), "contains no files"),
        (b"not a zip at all", "Could not unzip"),
    ],
    # Named by the refusal: a zip's bytes carry the time it was made, and test ids must
    # be the same in every xdist worker.
    ids=lambda value: value if isinstance(value, str) else "package",
)
def test_unpack_refuses_unsafe_packages(package: bytes, message: str) -> None:
    with pytest.raises(InvalidCode, match=re.escape(message)):
        unpack_zip(package)


def test_unpack_refuses_a_package_whose_entry_is_corrupt() -> None:
    good = _zip({"handler.py": "x" * 100})
    bad = good.replace(b"x" * 100, b"y" * 100)  # stored uncompressed: CRC now wrong
    with pytest.raises(InvalidCode, match=r"Cannot read handler\.py"):
        unpack_zip(bad)


def test_build_zip_is_deterministic_and_round_trips() -> None:
    files = {"b/c.py": b"c", "a.py": b"a"}
    assert build_zip(files) == build_zip(dict(reversed(files.items())))
    assert unpack_zip(build_zip(files)) == files


# -- the mirror ------------------------------------------------------------------------


@pytest.fixture
def artifacts(tmp_path: Path) -> Iterator[ArtifactService]:
    refs = SqliteRefStore(tmp_path / "refs.sqlite")
    yield ArtifactService(Repositories(LocalObjectStore(tmp_path / "objects"), refs))
    refs.close()


def _tree(artifacts: ArtifactService, ref: str, path: str) -> dict[str, bytes]:
    return read_source(artifacts, TENANT, "functions", ref, path).files


def test_mirror_creates_the_repo_and_makes_the_directory_exact(
    artifacts: ArtifactService,
) -> None:
    mirror = CodeMirror(artifacts)
    first = mirror.commit(TENANT, "fn", {"handler.py": b"1", "old.py": b"o"}, "one")
    assert _tree(artifacts, first, "functions/fn") == {"handler.py": b"1", "old.py": b"o"}
    second = mirror.commit(TENANT, "fn", {"handler.py": b"2", "new/x.py": b"x"}, "two")
    assert _tree(artifacts, "main", "functions/fn") == {"handler.py": b"2", "new/x.py": b"x"}
    assert artifacts.log(TENANT, "functions", "main", 5)[1].sha == first
    # Nothing changed: the tip is reused, no empty commit.
    assert mirror.commit(TENANT, "fn", {"handler.py": b"2", "new/x.py": b"x"}, "3") == second
    # Another function's directory is left alone.
    mirror.commit(TENANT, "other", {"h.py": b"h"}, "other")
    assert _tree(artifacts, "main", "functions/fn") == {"handler.py": b"2", "new/x.py": b"x"}


def test_mirror_turns_files_into_directories_and_back(artifacts: ArtifactService) -> None:
    mirror = CodeMirror(artifacts)
    mirror.commit(TENANT, "fn", {"lib": b"file", "h.py": b"h"}, "one")
    mirror.commit(TENANT, "fn", {"lib/x.py": b"x", "h.py": b"h"}, "two")
    assert _tree(artifacts, "main", "functions/fn") == {"lib/x.py": b"x", "h.py": b"h"}
    mirror.commit(TENANT, "fn", {"lib": b"file again", "h.py": b"h"}, "three")
    assert _tree(artifacts, "main", "functions/fn") == {"lib": b"file again", "h.py": b"h"}


def test_mirror_replaces_a_file_pushed_where_the_directory_goes(
    artifacts: ArtifactService,
) -> None:
    artifacts.create_repo(TENANT, "functions")
    artifacts.commit_files(TENANT, "functions", "main", {"functions/fn": b"oops"}, "m", AUTHOR)
    CodeMirror(artifacts).commit(TENANT, "fn", {"h.py": b"h"}, "deploy")
    assert _tree(artifacts, "main", "functions/fn") == {"h.py": b"h"}


def test_mirror_refuses_with_a_conflict_when_the_repo_blocks_the_path(
    artifacts: ArtifactService,
) -> None:
    artifacts.create_repo(TENANT, "functions")
    artifacts.commit_files(TENANT, "functions", "main", {"functions": b"a file"}, "m", AUTHOR)
    with pytest.raises(Conflict, match="'functions' is a file"):
        CodeMirror(artifacts).commit(TENANT, "fn", {"h.py": b"h"}, "deploy")


class _Interfering(ArtifactService):
    """Moves `main` under the mirror once, between its read and its commit."""

    interfered = False

    def commit_files(self, tenant: str, repo: str, branch: str, *args: object, **kw: object) -> str:
        if not self.interfered:
            self.interfered = True
            super().commit_files(tenant, repo, branch, {"README": b"r"}, "meanwhile", AUTHOR)
        return super().commit_files(tenant, repo, branch, *args, **kw)  # type: ignore[arg-type]


def test_mirror_recomputes_when_the_branch_moves_meanwhile(tmp_path: Path) -> None:
    refs = SqliteRefStore(tmp_path / "refs.sqlite")
    artifacts = _Interfering(Repositories(LocalObjectStore(tmp_path / "objects"), refs))
    mirror = CodeMirror(artifacts)
    mirror.commit(TENANT, "fn", {"h.py": b"1"}, "one")
    sha = mirror.commit(TENANT, "fn", {"h.py": b"2"}, "two")
    assert artifacts.interfered
    assert _tree(artifacts, sha, "functions/fn") == {"h.py": b"2"}
    assert artifacts.read_blob(TENANT, "functions", sha, "README") == b"r"
    refs.close()


def test_removing_code_never_mirrored_creates_nothing(artifacts: ArtifactService) -> None:
    assert CodeMirror(artifacts).remove(TENANT, "fn", "DeleteFunction fn") is None
    with pytest.raises(NotFound):
        artifacts.refs(TENANT, "functions")


# -- the use cases ----------------------------------------------------------------------


@dataclass
class Setup:
    service: FunctionService
    artifacts: ArtifactService
    store: SqliteFunctionStore


@pytest.fixture
def setup(tmp_path: Path, artifacts: ArtifactService) -> Iterator[Setup]:
    db = Database(tmp_path / "treadle.db")
    store = SqliteFunctionStore(db)
    service = FunctionService(
        store=store,
        code=LocalCodeStore(tmp_path / "code"),
        artifacts=artifacts,
        clock=ManualClock(),
        ids=RandomIds(),
        region="us-east-1",
        quotas=NoQuotas(),
    )
    yield Setup(service, artifacts, store)
    db.close()


def _create(service: FunctionService, name: str, package: bytes) -> None:
    service.create(
        TENANT,
        CreateFunctionRequest(
            FunctionName=name,
            Handler="handler.handler",
            Code=FunctionCode(ZipFile=base64.b64encode(package).decode()),
        ),
    )


def _tip(artifacts: ArtifactService) -> str:
    return artifacts.refs(TENANT, "functions")["refs/heads/main"]


def test_upload_commit_and_publish_record_the_shas(setup: Setup) -> None:
    package = _zip({"handler.py": "v1"})
    _create(setup.service, "fn", package)
    created = setup.service.get(TENANT, "fn", None)
    assert created.commit_sha == _tip(setup.artifacts)
    assert created.code_sha256 == base64.b64encode(hashlib.sha256(package).digest()).decode()
    message = setup.artifacts.log(TENANT, "functions", "main", 1)[0].message
    assert message.startswith(f"CreateFunction fn (sha256 {hashlib.sha256(package).hexdigest()})")

    # A refused create changes neither the record nor Git.
    with pytest.raises(AlreadyExists):
        _create(setup.service, "fn", _zip({"handler.py": "other"}))
    assert _tip(setup.artifacts) == created.commit_sha

    update = base64.b64encode(_zip({"handler.py": "v2"})).decode()
    setup.service.update_code(TENANT, "fn", UpdateCodeRequest(ZipFile=update))
    version = setup.service.publish(TENANT, "fn", None)
    assert version.version == "1" and version.commit_sha == _tip(setup.artifacts)
    assert version.commit_sha != created.commit_sha
    assert setup.service.get(TENANT, "fn", "1").commit_sha == version.commit_sha

    setup.service.delete(TENANT, "fn", None)
    with pytest.raises(NotFound):
        setup.artifacts.read_tree(TENANT, "functions", "main", "functions/fn")


def test_concurrent_uploads_leave_the_branch_tip_equal_to_latest(setup: Setup) -> None:
    _create(setup.service, "fn", _zip({"handler.py": "v0"}))

    def upload(i: int) -> None:
        package = base64.b64encode(_zip({"handler.py": f"v{i}", f"f{i}.py": "x"})).decode()
        setup.service.update_code(TENANT, "fn", UpdateCodeRequest(ZipFile=package))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, range(1, 17)))
    latest = setup.service.get(TENANT, "fn", None)
    assert latest.commit_sha == _tip(setup.artifacts)
    files = _tree(setup.artifacts, "main", "functions/fn")
    assert len(files) == 2 and setup.store.get(TENANT, "fn").code_sha256 == latest.code_sha256
    number = files["handler.py"].decode().removeprefix("v")
    assert set(files) == {"handler.py", f"f{number}.py"}


def test_bad_code_reaches_neither_git_nor_the_store(setup: Setup) -> None:
    with pytest.raises(InvalidCode):
        _create(setup.service, "fn", _zip({"../x.py": "x"}))
    with pytest.raises(NotFound):
        setup.artifacts.refs(TENANT, "functions")
    with pytest.raises(NotFound):
        setup.service.get(TENANT, "fn", None)


def test_deploy_publishes_from_a_ref_and_is_idempotent(setup: Setup) -> None:
    artifacts = setup.artifacts
    artifacts.create_repo(TENANT, "src")
    first = artifacts.commit_files(
        TENANT, "src", "main", {"app/handler.py": b"v1", "README": b"r"}, "m", AUTHOR
    )
    body = DeployRequest(repo="src", path="/app/", handler="handler.handler", timeout=30)
    version = setup.service.deploy(TENANT, "fn", body)
    assert version.version == "1" and version.timeout_s == 30
    assert version.source is not None
    assert (version.source.commit_sha, version.source.path) == (first, "app")
    assert _tree(artifacts, version.commit_sha or "", "functions/fn") == {"handler.py": b"v1"}
    # Same tree, same configuration: the same version; the zip is deterministic.
    again = setup.service.deploy(TENANT, "fn", body)
    assert (again.version, again.code_sha256) == ("1", version.code_sha256)
    artifacts.commit_files(TENANT, "src", "main", {"app/handler.py": b"v2"}, "m2", AUTHOR)
    newer = setup.service.deploy(TENANT, "fn", body)
    assert newer.version == "2" and newer.code_sha256 != version.code_sha256
    # An upload after a deploy is not from a repository any more.
    update = base64.b64encode(_zip({"handler.py": "v3"})).decode()
    assert setup.service.update_code(TENANT, "fn", UpdateCodeRequest(ZipFile=update)).source is None


@pytest.mark.parametrize(
    ("repo", "ref", "path", "error", "message"),
    [
        ("nope", "main", "", NotFound, "Repository 'nope' does not exist"),
        ("src", "nope", "", NotFound, "Ref 'nope' does not exist in repository 'src'"),
        ("src", "main", "missing", NotFound, "Path 'missing' does not exist in repository"),
        ("src", "main", "app/handler.py", InvalidParameter, "is not a directory"),
        ("src", "main", "../x", InvalidParameter, "Invalid path"),
    ],
)
def test_deploy_names_what_is_wrong(
    setup: Setup, repo: str, ref: str, path: str, error: type[Exception], message: str
) -> None:
    setup.artifacts.create_repo(TENANT, "src")
    setup.artifacts.commit_files(TENANT, "src", "main", {"app/handler.py": b"v1"}, "m", AUTHOR)
    body = DeployRequest(repo=repo, ref=ref, path=path, handler="handler.handler")
    with pytest.raises(error, match=message):
        setup.service.deploy(TENANT, "fn", body)


def test_function_records_written_before_code_was_mirrored_still_read(tmp_path: Path) -> None:
    # A body as older Treadle versions stored it: no commit sha, no source.
    legacy = (
        '{"tenant":"123456789012","function_name":"old","version":"$LATEST",'
        '"function_arn":"arn:aws:lambda:us-east-1:123456789012:function:old",'
        '"handler":"h.h","code_sha256":"x","code_size":1,"code_key":"k",'
        '"last_modified_ms":1,"revision_id":"r"}'
    )
    db = Database(tmp_path / "treadle.db")
    with db.write() as conn:
        conn.execute(
            "INSERT INTO functions (tenant, name, version, version_num, body)"
            " VALUES (?, 'old', '$LATEST', 0, ?)",
            (TENANT, legacy),
        )
    fn = SqliteFunctionStore(db).get(TENANT, "old")
    assert fn.commit_sha is None and fn.source is None
    db.close()
