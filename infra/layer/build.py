"""Build the platform's dependency layer into build/lambda-layer (see README.md beside this).

The layer holds the project's runtime dependencies (pyproject `[project].dependencies`)
plus AWS Lambda Powertools, as manylinux wheels for the Lambda runtime and architecture
of `infra/functions.py` (Python 3.12, arm64). Only wheels are used, so no Docker and no
compiler is needed: `pip download`-style cross-installation from any machine.

Usage (from the repo root):  .venv/bin/python infra/layer/build.py [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "build" / "lambda-layer"
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
EXTRA_REQUIREMENTS = ("aws-lambda-powertools>=3",)


def requirements() -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *EXTRA_REQUIREMENTS]


def build(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    target = out / "python"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--target",
        str(target),
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
        *requirements(),
    ]
    subprocess.run(command, check=True)
    for cache in target.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
