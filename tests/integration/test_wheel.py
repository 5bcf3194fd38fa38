"""A built wheel, installed into a fresh venv, runs `treadle dev` away from the checkout.

Nothing of the checkout may be needed at run time: the lifecycles are package data, the
sandbox finds `treadle` where it was installed. Third-party dependencies come from the
development venv (one path line in a .pth file) so nothing is downloaded again; treadle
itself must come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import sqlite3
import subprocess
import sys
import time
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from support.server import zip_files
from treadle.tenancy.credentials import read_profile

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

GREETER = """
from aws_durable_execution_sdk_python import DurableContext, durable_execution, durable_step


@durable_step
def greet(step_ctx, name):
    from treadle_facets import connect  # shipped in the wheel beside treadle

    db = connect("greetings")
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS greeted(name TEXT)")
        db.execute("INSERT INTO greeted VALUES (?)", (name,))
    return f"Hello, {name}!"


@durable_execution
def handler(event, context: DurableContext):
    return context.step(greet(event), name="greet")
"""


def _build_wheel(tmp: Path) -> Path:
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources, and
    # other tests run from the checkout meanwhile.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    shutil.copytree(
        REPO_ROOT / "functions",
        src / "functions",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    dist = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(dist), str(src)], check=True)
    (wheel,) = dist.glob("treadle-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    # A plain path line: the development site-packages' own .pth files (among them the
    # editable install pointing at the checkout) are not processed from there.
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "dev_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env_dir


def _clean_env(home: Path) -> dict[str, str]:
    dropped = ("PYTHON", "TREADLE_", "AWS_", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    yield _fresh_venv(tmp, _build_wheel(tmp))


def test_the_installed_package_is_the_wheels(installed: Path, tmp_path: Path) -> None:
    found = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import treadle; print(treadle.__file__)"],
        cwd=tmp_path,
        env=_clean_env(tmp_path),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(found).is_relative_to(installed), found
    assert not Path(found).is_relative_to(REPO_ROOT)
    shipped = sorted(p.name for p in (Path(found).parent / "domain" / "statemachine").iterdir())
    assert shipped == sorted(p.name for p in (REPO_ROOT / "statemachine").glob("*.json"))
    # The modules tenant code imports beside the SDK ship in the same wheel.
    helpers = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import treadle_workflows as m; print(m.__file__)",
        ],
        cwd=tmp_path,
        env=_clean_env(tmp_path),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(helpers).is_relative_to(installed), helpers


def test_treadle_dev_from_the_wheel_runs_a_durable_function(
    installed: Path, tmp_path: Path
) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    data = work / "data"
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [str(installed / "bin" / "treadle"), "dev", "--port", "0", "--data-dir", str(data)],
        cwd=work,
        env=_clean_env(work),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        url = _ready_url(proc, tmp_path / "server.log")
        keys = read_profile(data / "credentials", "treadle")
        assert keys is not None
        lam = boto3.client(
            "lambda",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=keys["aws_access_key_id"],
            aws_secret_access_key=keys["aws_secret_access_key"],
            config=Config(read_timeout=120, retries={"max_attempts": 1}),
        )
        _deploy(lam)
        answer = lam.invoke(FunctionName="greeter", Payload=json.dumps("wheel"))
        assert answer["StatusCode"] == 200 and "FunctionError" not in answer
        assert json.loads(answer["Payload"].read()) == "Hello, wheel!"
        (facet,) = (data / "facets").glob("*/greetings/db.sqlite")
        db = sqlite3.connect(facet)
        assert db.execute("SELECT name FROM greeted").fetchall() == [("wheel",)]
        db.close()
        # The console's templates and static files are package data in the wheel.
        with urllib.request.urlopen(url + "/console/login", timeout=30) as page:
            assert b'name="access_key_id"' in page.read()
        with urllib.request.urlopen(url + "/console/static/console.css", timeout=30) as css:
            assert css.status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _ready_url(proc: subprocess.Popen[str], log: Path) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if "ready at " in line:
            return line.split("ready at ")[1].split()[0]
    raise AssertionError(f"treadle dev did not start:\n{''.join(seen)}{log.read_text()[-4000:]}")


def _deploy(lam: Any) -> None:
    lam.create_function(
        FunctionName="greeter",
        Runtime="python3.11",
        Role="arn:aws:iam::123456789012:role/treadle-tenant",
        Handler="handler.handler",
        Code={"ZipFile": zip_files({"handler.py": GREETER})},
        Timeout=60,
        DurableConfig={"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1},
    )
