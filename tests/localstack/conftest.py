"""End-to-end tests against the CDK stack deployed to LocalStack (see localstack/README.md).

Every test here is skipped, with the reason, when no LocalStack answers at
$TREADLE_LOCALSTACK_URL (default http://localhost:4566), when the stack
`Treadle-$TREADLE_STAGE` (default stage "local") is not deployed there, or when the
platform admin's key is unknown: CI, which has none of these, skips them all quickly.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from treadle.settings import ENV_ADMIN_KEY_ID, ENV_ADMIN_SECRET

# The stack's names (stack, outputs, stage rule) come from the repo root's `infra` package.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from infra import names  # noqa: E402

STATE_DIR = REPO_ROOT / "localstack" / ".state"

ENV_LOCALSTACK_URL = "TREADLE_LOCALSTACK_URL"
ENV_STAGE = "TREADLE_STAGE"
# Overrides the API URL derived from the stack's output (e.g. a LocalStack elsewhere).
ENV_API_URL = "TREADLE_LOCALSTACK_API_URL"
DEFAULT_URL = "http://localhost:4566"
DEFAULT_STAGE = "local"
PROBE_TIMEOUT_S = 1.0
# cdklocal deploys with LocalStack's "test" credentials (account 000000000000): read
# the stack with the same ones, whatever AWS profile the environment holds.
LOCALSTACK_KEY = "test"
# Stack states in which the outputs are there and mean what they say.
STABLE_STATES = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "localstack: end to end against the stack deployed to LocalStack "
        "(skipped when no LocalStack answers; see localstack/README.md)",
    )


@dataclass(frozen=True)
class LocalStack:
    url: str
    health: Mapping[str, Any]


@dataclass(frozen=True)
class DeployedStack:
    stage: str
    name: str
    region: str
    outputs: Mapping[str, str]
    api_url: str  # where this machine reaches the HTTP API, ending with "/"


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _state(stage: str) -> dict[str, str]:
    """What localstack/deploy.sh wrote for the stage (`export KEY=VALUE` lines), if any."""
    path = STATE_DIR / f"{stage}.env"
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            for word in shlex.split(line, comments=True):
                key, sep, value = word.partition("=")
                if sep:
                    values[key] = value
    return values


@pytest.fixture(scope="session", autouse=True)
def localstack() -> LocalStack:
    """LocalStack's health endpoint answers within a second, or every test here skips."""
    url = os.environ.get(ENV_LOCALSTACK_URL, DEFAULT_URL).rstrip("/")
    probe = f"{url}/_localstack/health"
    try:
        with urllib.request.urlopen(probe, timeout=PROBE_TIMEOUT_S) as resp:
            health = json.loads(resp.read())
    except (OSError, ValueError) as err:  # refused, timed out, HTTP error, not JSON
        pytest.skip(f"no LocalStack answers at {url} ({ENV_LOCALSTACK_URL}): {err}")
    if not isinstance(health, dict) or "services" not in health:
        pytest.skip(f"no LocalStack answers at {url}: {probe} is not LocalStack's health")
    return LocalStack(url=url, health=health)


@pytest.fixture(scope="session")
def stage() -> str:
    return names.validate_stage(os.environ.get(ENV_STAGE, DEFAULT_STAGE))


@pytest.fixture(scope="session")
def stack(localstack: LocalStack, stage: str) -> DeployedStack:
    """The stack's outputs, read through LocalStack's CloudFormation."""
    name = names.stack_name(stage)
    cfn = boto3.client(
        "cloudformation",
        endpoint_url=localstack.url,
        region_name=_region(),
        aws_access_key_id=LOCALSTACK_KEY,
        aws_secret_access_key=LOCALSTACK_KEY,
    )
    try:
        found = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as err:
        if "does not exist" in str(err):
            pytest.skip(
                f"stack {name} is not deployed in the LocalStack at {localstack.url} "
                f"(region {_region()}): run localstack/deploy.sh"
            )
        raise
    except BotoCoreError as err:
        pytest.skip(f"LocalStack at {localstack.url} does not answer CloudFormation: {err}")
    if not found or found[0]["StackStatus"] == "DELETE_COMPLETE":
        pytest.skip(f"stack {name} is not deployed in the LocalStack at {localstack.url}")
    status = found[0]["StackStatus"]
    if status not in STABLE_STATES:
        pytest.fail(f"stack {name} is {status} in LocalStack: see the deploy's output")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found[0].get("Outputs", [])}
    api_url = os.environ.get(ENV_API_URL) or _localstack_api_url(
        outputs[names.OUTPUT_API_URL], localstack.url
    )
    return DeployedStack(
        stage=stage,
        name=name,
        region=_region(),
        outputs=outputs,
        api_url=api_url.rstrip("/") + "/",
    )


def _localstack_api_url(output: str, localstack_url: str) -> str:
    """LocalStack's URL of an HTTP API: `http://<id>.execute-api.localhost.localstack.cloud:<port>/`.

    The output is CloudFormation's `https://<id>.execute-api.<region>.<URLSuffix>/`, which
    LocalStack does not serve as is; its own host-based form keeps the request path as
    boto3 signs it (the path-based `/_aws/execute-api/<id>/...` form would not).
    """
    api_id = (urlsplit(output).hostname or "").split(".", 1)[0]
    assert api_id, f"unexpected {names.OUTPUT_API_URL} output {output!r}"
    parts = urlsplit(localstack_url)
    return f"{parts.scheme}://{api_id}.execute-api.localhost.localstack.cloud:{parts.port or 4566}/"


@pytest.fixture(scope="session")
def admin_credentials(stage: str) -> tuple[str, str]:
    """The platform admin's key pair: from the environment, else localstack/.state/<stage>.env.

    The stack gives the platform no admin credential of its own; localstack/deploy.sh sets
    one on the platform functions and records it in the state file.
    """
    state = _state(stage)
    key_id = os.environ.get(ENV_ADMIN_KEY_ID) or state.get(ENV_ADMIN_KEY_ID)
    secret = os.environ.get(ENV_ADMIN_SECRET) or state.get(ENV_ADMIN_SECRET)
    if not (key_id and secret):
        pytest.skip(
            f"the platform admin's key is unknown: set {ENV_ADMIN_KEY_ID} and "
            f"{ENV_ADMIN_SECRET} to the key the platform functions have, or deploy with "
            "localstack/deploy.sh (which writes it to localstack/.state/)"
        )
    return key_id, secret


@pytest.fixture(scope="session")
def api_health(stack: DeployedStack) -> None:
    """The API answers (its first request may start a container: give it time)."""
    url = f"{stack.api_url}v1/health"
    problem = None
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            resp.read()
    except urllib.error.HTTPError as err:
        problem = f"GET {url} answered {err.code}: {err.read()[:500]!r}"
    except OSError as err:
        problem = f"GET {url} failed: {err} (set {ENV_API_URL} if the API is elsewhere)"
    if problem:
        pytest.fail(problem, pytrace=False)
