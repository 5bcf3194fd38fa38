"""The tenant layer's AWS_LAMBDA_EXEC_WRAPPER, run with bash as Lambda would run it.

Lambda execs the wrapper with the runtime's command line; the command exec'd here stands
in for the runtime and reports the environment and the arguments it got.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from treadle.adapters.aws.tenant_credentials import (
    SANDBOX_KEY_ID_ENV,
    SANDBOX_SECRET_ENV,
    WRAPPER_PATH,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# The layer's source holds what Lambda unpacks at /opt.
WRAPPER = REPO_ROOT / "infra" / "layer" / "tenant" / Path(WRAPPER_PATH).relative_to("/opt")
REPORT = "import json, os, sys; print(json.dumps({'env': dict(os.environ), 'argv': sys.argv[1:]}))"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(env: dict[str, str]) -> dict[str, object]:
    # As Lambda does: the wrapper, then the interpreter and its original arguments.
    command = ["bash", str(WRAPPER), sys.executable, "-c", REPORT, "--arg", "two words"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=30)
    result: dict[str, object] = json.loads(done.stdout)
    result["stderr"] = done.stderr
    return result


def _lambda_env(**extra: str) -> dict[str, str]:
    """What Lambda gives a runtime: the role's STS credentials, and ours."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ACCESS_KEY_ID": "ASIAROLEROLEROLEROLE",
        "AWS_SECRET_ACCESS_KEY": "role-secret",
        "AWS_SESSION_TOKEN": "role-session-token",
        "AWS_SECURITY_TOKEN": "role-session-token",
        "AWS_ENDPOINT_URL_LAMBDA": "https://api.example",
        **extra,
    }


def test_the_runtime_gets_the_sandbox_key_in_place_of_the_role_credentials() -> None:
    out = _run(
        _lambda_env(**{SANDBOX_KEY_ID_ENV: "AKIASANDBOX", SANDBOX_SECRET_ENV: "sb/se+cret="})
    )
    env = out["env"]
    assert isinstance(env, dict)
    assert env["AWS_ACCESS_KEY_ID"] == "AKIASANDBOX"
    assert env["AWS_SECRET_ACCESS_KEY"] == "sb/se+cret="
    assert "AWS_SESSION_TOKEN" not in env and "AWS_SECURITY_TOKEN" not in env
    # Moved, not copied; everything else passes through untouched.
    assert SANDBOX_KEY_ID_ENV not in env and SANDBOX_SECRET_ENV not in env
    assert env["AWS_ENDPOINT_URL_LAMBDA"] == "https://api.example"
    assert out["argv"] == ["--arg", "two words"]  # arguments intact, spaces included


def test_without_a_sandbox_key_the_runtime_still_starts_and_says_why() -> None:
    out = _run(_lambda_env())
    env = out["env"]
    assert isinstance(env, dict)
    assert env["AWS_ACCESS_KEY_ID"] == "ASIAROLEROLEROLEROLE"
    assert "no sandbox key" in str(out["stderr"])


def test_the_wrapper_reads_the_names_the_runtime_sets() -> None:
    text = WRAPPER.read_text()
    assert text.startswith("#!/bin/bash\n")
    for name in (SANDBOX_KEY_ID_ENV, SANDBOX_SECRET_ENV):
        assert f"${{{name}" in text, name
    assert 'exec "$@"' in text
