"""Build a Lambda layer from prebuilt wheels (see README.md beside this).

Two targets, neither needing Docker nor a compiler (`pip install --target` of wheels for
the Lambda platform, from any machine):

- `platform` (default, build/lambda-layer): the platform functions' dependencies
  (pyproject `[project].dependencies`) plus AWS Lambda Powertools, as manylinux wheels
  for the runtime and architecture of `infra/functions.py` (Python 3.12, arm64);
- `tenant` (build/tenant-layer): what every tenant function gets (`infra/tenant_layer.py`):
  the durable SDK and the boto3 it needs, at the project's own pins, as *pure-Python*
  wheels only (one layer for x86_64 and arm64, for every Python runtime a tenant may
  pick from 3.11 on), plus `bin/treadle-sandbox-credentials`, the credential wrapper.

Usage (from the repo root):
  .venv/bin/python infra/layer/build.py [--target platform|tenant] [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = {
    "platform": REPO_ROOT / "build" / "lambda-layer",
    "tenant": REPO_ROOT / "build" / "tenant-layer",
}
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
EXTRA_REQUIREMENTS = ("aws-lambda-powertools>=3",)
# The oldest runtime a tenant function may declare (treadle/app/functions.py).
TENANT_PYTHON_VERSION = "3.11"
# Taken with their pins from pyproject's dependencies, so tenants run what the embedded
# sandbox runs.
TENANT_PACKAGES = ("aws-durable-execution-sdk-python", "boto3")
TENANT_BIN = Path(__file__).resolve().parent / "tenant" / "bin"
# The platform's own modules tenant code imports beside the SDK (stdlib only).
TENANT_MODULES = ("treadle_facets", "treadle_workflows")


def requirements() -> list[str]:
    return [*_dependencies(), *EXTRA_REQUIREMENTS]


def tenant_requirements() -> list[str]:
    found = [dep for dep in _dependencies() if _name(dep) in TENANT_PACKAGES]
    missing = set(TENANT_PACKAGES) - {_name(dep) for dep in found}
    if missing:
        raise SystemExit(f"pyproject.toml does not depend on {sorted(missing)}")
    return found


def _dependencies() -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def _pip_install(target: Path, platform_args: list[str], packages: list[str]) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--target",
        str(target),
        "--only-binary=:all:",
        *platform_args,
        *packages,
    ]
    subprocess.run(command, check=True)
    for cache in target.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def build(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    platform_args = ["--implementation", "cp", "--python-version", PYTHON_VERSION]
    platform_args += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    _pip_install(out / "python", platform_args, requirements())


def build_tenant(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    # `--platform any --abi none`: pip refuses any package without a pure-Python wheel,
    # which would tie the layer to one architecture.
    platform_args = ["--implementation", "py", "--python-version", TENANT_PYTHON_VERSION]
    platform_args += ["--abi", "none", "--platform", "any"]
    _pip_install(out / "python", platform_args, tenant_requirements())
    for module in TENANT_MODULES:
        source = REPO_ROOT / "functions" / module
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(source, out / "python" / module, ignore=skip)
    (out / "bin").mkdir()
    for script in TENANT_BIN.iterdir():
        copied = out / "bin" / script.name
        shutil.copyfile(script, copied)
        # Lambda execs AWS_LAMBDA_EXEC_WRAPPER: it must be executable (and world-readable,
        # as every file of a layer) whatever the umask or the checkout did to the source.
        copied.chmod(0o755)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(OUTPUTS), default="platform")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or OUTPUTS[args.target]
    (build_tenant if args.target == "tenant" else build)(out)


if __name__ == "__main__":
    main()
