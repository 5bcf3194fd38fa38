"""New code is readied at CreateFunction / UpdateFunctionCode, not at its first invoke."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fakes import ManualClock, NoQuotas
from treadle.adapters.local.basics import RandomIds
from treadle.adapters.local.code import LocalCodeStore
from treadle.adapters.local.objects import LocalObjectStore
from treadle.adapters.sandbox import LocalSandbox
from treadle.adapters.sandbox.function_runtime import SandboxRuntime
from treadle.adapters.sqlite.db import Database
from treadle.adapters.sqlite.functions import SqliteFunctionStore
from treadle.adapters.sqlite.logs import SqliteLogStore
from treadle.adapters.sqlite.refs import SqliteRefStore
from treadle.app.functions import (
    CreateFunctionRequest,
    FunctionCode,
    FunctionService,
    UpdateCodeRequest,
)
from treadle.artifacts import ArtifactService, Repositories
from treadle.domain.ports import FunctionVersion

TENANT = "123456789012"


def _zip(source: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", source)
    return base64.b64encode(buf.getvalue()).decode()


def _service(tmp_path: Path, prepare: object) -> FunctionService:
    artifacts = ArtifactService(
        Repositories(
            LocalObjectStore(tmp_path / "git" / "objects"), SqliteRefStore(tmp_path / "refs.db")
        )
    )
    return FunctionService(
        store=SqliteFunctionStore(Database(tmp_path / "treadle.db")),
        code=LocalCodeStore(tmp_path / "code"),
        artifacts=artifacts,
        clock=ManualClock(),
        ids=RandomIds(),
        region="us-east-1",
        quotas=NoQuotas(),
        prepare=prepare,  # type: ignore[arg-type]
    )


def _create(service: FunctionService, source: str) -> FunctionVersion:
    return service.create(
        TENANT,
        CreateFunctionRequest(
            FunctionName="fn", Handler="handler.handler", Code=FunctionCode(ZipFile=_zip(source))
        ),
    )


def test_every_new_code_is_prepared_and_a_failure_fails_nothing(tmp_path: Path) -> None:
    prepared: list[tuple[str, str]] = []
    service = _service(tmp_path, lambda fn: prepared.append((fn.version, fn.code_key)))
    created = _create(service, "v1")
    updated = service.update_code(TENANT, "fn", UpdateCodeRequest(ZipFile=_zip("v2"), Publish=True))
    assert prepared == [("$LATEST", created.code_key), ("1", updated.code_key)]
    assert created.code_key != updated.code_key

    def broken(fn: FunctionVersion) -> None:
        raise OSError("disk full")

    other = _service(tmp_path / "other", broken)
    assert _create(other, "v1").function_name == "fn"  # the create stands


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[tuple[SandboxRuntime, LocalCodeStore]]:
    code = LocalCodeStore(tmp_path / "code")
    sandbox = LocalSandbox(work_dir=tmp_path / "sandbox", privileged=False)
    yield (
        SandboxRuntime(
            sandbox=sandbox, code=code, logs=SqliteLogStore(tmp_path / "logs.db"), platform_env={}
        ),
        code,
    )


def test_the_sandbox_unpacks_the_tenants_copy_before_any_invoke(
    tmp_path: Path, runtime: tuple[SandboxRuntime, LocalCodeStore]
) -> None:
    sandbox_runtime, code = runtime
    service = _service(tmp_path / "svc", sandbox_runtime.prepare)
    service.code = code
    fn = _create(service, "def handler(event, context):\n    return 1\n")
    unpacked = tmp_path / "code" / "unpacked" / TENANT / fn.code_key
    assert (unpacked / "handler.py").read_text().startswith("def handler")
    # The first invoke finds it ready: the same copy, not a second unpacking.
    before = (unpacked / "handler.py").stat().st_ino
    assert code.unpacked(fn.code_key, TENANT) == unpacked
    assert (unpacked / "handler.py").stat().st_ino == before


def _package(entries: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_unpacking_compiles_bytecode_within_bounds_and_leaves_bad_code_to_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from treadle.adapters.local import code as code_module

    monkeypatch.setattr(code_module, "MAX_COMPILED_FILE_BYTES", 1000)
    store = LocalCodeStore(tmp_path / "code")
    key = store.put(
        _package(
            {
                "handler.py": "def handler(event, context):\n    return 1\n",
                "pkg/__init__.py": "",
                "pkg/util.py": "X = 1\n",
                "broken.py": "def (:\n",
                "big.py": "X = 1\n" * 400,  # 2,400 bytes: over the (patched) limit
            }
        )
    )
    root = store.unpacked(key, TENANT)

    def compiled(module: str) -> bool:
        return Path(importlib.util.cache_from_source(str(root / module))).exists()

    assert compiled("handler.py") and compiled("pkg/util.py") and compiled("pkg/__init__.py")
    assert not compiled("broken.py")  # its SyntaxError is the worker's to report
    assert not compiled("big.py")
    # Read-only like the sources.
    pyc = Path(importlib.util.cache_from_source(str(root / "handler.py")))
    assert pyc.stat().st_mode & 0o222 == 0
