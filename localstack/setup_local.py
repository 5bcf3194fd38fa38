"""LocalStack helpers for localstack/deploy.sh: wait for LocalStack, then fit the deployed
stack to it. Run with the project's venv from the repo root:

    .venv/bin/python localstack/setup_local.py wait
    .venv/bin/python localstack/setup_local.py configure --stage local

`configure` makes, on the three platform functions only, the changes a LocalStack stage
needs and the stack does not express (re-applied after every deploy, since a deploy that
changes a function's environment resets it to the template's):

- TREADLE_API_URL: the stack hands tenant functions the HTTP API's URL as CloudFormation
  builds it (`https://<id>.execute-api.<region>.<URLSuffix>/`); under LocalStack that
  name does not reach the API from a Lambda container. LocalStack's own form,
  `http://<id>.execute-api.localhost.localstack.cloud:4566/`, does, from the host too.
- TREADLE_FUNCTION_RUNTIME=lambda: LocalStack sets AWS_ENDPOINT_URL in every Lambda
  container, which makes the platform "emulated" and, unless told otherwise, run tenant
  code in its local sandbox; LocalStack runs Lambda code itself, so use it.
- TREADLE_ADMIN_ACCESS_KEY_ID / TREADLE_ADMIN_SECRET_ACCESS_KEY: the stack generates an
  admin key secret (output AdminSecretArn) that the API reads; an explicit pair takes
  precedence, which keeps the key the tests use stable across deploys. Taken from the
  environment, else from an earlier run's state file, else generated.

It then waits until the API answers `GET /v1/health` and writes the values the e2e tests
read to localstack/.state/<stage>.env (mode 0600, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(__file__).resolve().parent / ".state"
sys.path.insert(0, str(REPO_ROOT))

import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from infra import names  # noqa: E402
from treadle.settings import ENV_ADMIN_KEY_ID, ENV_ADMIN_SECRET  # noqa: E402
from treadle.tenancy.models import new_access_key_id, new_secret  # noqa: E402

DEFAULT_URL = "http://localhost:4566"
ENV_LOCALSTACK_URL = "TREADLE_LOCALSTACK_URL"
ENV_LOCALSTACK_API_URL = "TREADLE_LOCALSTACK_API_URL"
ENV_FUNCTION_RUNTIME = "TREADLE_FUNCTION_RUNTIME"  # treadle.settings: "lambda" | "sandbox"
# LocalStack's gateway port inside its container and in Lambda containers.
GATEWAY_PORT = 4566
# LocalStack's default account for the "test" credentials cdklocal uses.
LOCALSTACK_KEY = "test"
PLATFORM_ROLES = ("api", "orchestrator", "sweep")


def log(message: str) -> None:
    print(f"setup_local: {message}", flush=True)


def get_json(url: str, timeout: float) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            return err.code, json.loads(body)
        except ValueError:
            return err.code, body.decode(errors="replace")


def wait(url: str, timeout_s: float) -> int:
    """LocalStack answers, and its READY init hooks ran without error."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            status, health = get_json(f"{url}/_localstack/health", 2)
            if status == 200 and isinstance(health, dict) and "services" in health:
                status, init = get_json(f"{url}/_localstack/init/ready", 2)
                if status == 200 and isinstance(init, dict) and init.get("completed"):
                    failed = [s for s in init.get("scripts", []) if s.get("state") == "ERROR"]
                    if failed:
                        log(
                            "init hook(s) failed: "
                            + ", ".join(str(s.get("name")) for s in failed)
                            + " (docker compose -f localstack/docker-compose.yml logs localstack)"
                        )
                        return 1
                    log(f"LocalStack {health.get('version', '?')} ready at {url}")
                    return 0
                last = "init hooks still running"
            else:
                last = f"health answered {status}"
        except (OSError, ValueError) as err:
            last = str(err)
        time.sleep(2)
    log(f"LocalStack at {url} not ready after {timeout_s:.0f} s: {last}")
    return 1


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def client(service: str, url: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=url,
        region_name=region(),
        aws_access_key_id=LOCALSTACK_KEY,
        aws_secret_access_key=LOCALSTACK_KEY,
    )


def api_id_of(api_url: str) -> str:
    host = urlsplit(api_url).hostname or ""
    if ".execute-api." not in host:
        raise SystemExit(f"setup_local: unexpected {names.OUTPUT_API_URL} output {api_url!r}")
    return host.split(".", 1)[0]


def localstack_api_url(api_id: str, localstack_url: str | None = None) -> str:
    """The API's LocalStack URL: from the host (port as published) or from containers."""
    parts = urlsplit(localstack_url or f"http://localhost:{GATEWAY_PORT}")
    scheme = parts.scheme or "http"
    port = parts.port or GATEWAY_PORT
    return f"{scheme}://{api_id}.execute-api.localhost.localstack.cloud:{port}/"


def state_file(stage: str) -> Path:
    return STATE_DIR / f"{stage}.env"


def read_state(stage: str) -> dict[str, str]:
    path = state_file(stage)
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            for word in shlex.split(line, comments=True):
                key, sep, value = word.partition("=")
                if sep:
                    values[key] = value
    return values


def write_state(stage: str, values: dict[str, str]) -> Path:
    STATE_DIR.mkdir(exist_ok=True)
    path = state_file(stage)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# Written by localstack/setup_local.py for stage {stage}; source it.\n")
        for key, value in values.items():
            f.write(f"export {key}={shlex.quote(value)}\n")
    return path


def admin_key(stage: str) -> tuple[str, str]:
    key_id, secret = os.environ.get(ENV_ADMIN_KEY_ID), os.environ.get(ENV_ADMIN_SECRET)
    if key_id and secret:
        return key_id, secret
    previous = read_state(stage)
    key_id, secret = previous.get(ENV_ADMIN_KEY_ID), previous.get(ENV_ADMIN_SECRET)
    if key_id and secret:
        return key_id, secret
    return new_access_key_id(), new_secret()


def stack_api_url(url: str, stage: str) -> str:
    cfn = client("cloudformation", url)
    stack_name = names.stack_name(stage)
    try:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as err:
        raise SystemExit(f"setup_local: stack {stack_name} not found in LocalStack: {err}") from err
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    if names.OUTPUT_API_URL not in outputs:
        raise SystemExit(f"setup_local: {stack_name} has no {names.OUTPUT_API_URL} output")
    return str(outputs[names.OUTPUT_API_URL])


def configure_functions(url: str, stage: str, changes: dict[str, str]) -> None:
    lam = client("lambda", url)
    for role in PLATFORM_ROLES:
        name = names.platform_function_name(stage, role)
        config = lam.get_function_configuration(FunctionName=name)
        variables = dict(config.get("Environment", {}).get("Variables", {}))
        if all(variables.get(k) == v for k, v in changes.items()):
            log(f"{name}: environment already set")
            continue
        variables.update(changes)
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
        lam.get_waiter("function_updated_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 90}
        )
        log(f"{name}: environment updated ({', '.join(sorted(changes))})")


def warm_up(api_url: str, timeout_s: float) -> bool:
    """The first request starts the API function's container (an image pull, at first)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            status, body = get_json(f"{api_url}v1/health", 60)
            if status == 200:
                log(f"API answers at {api_url}")
                return True
            last = f"{status} {body}"
        except (OSError, ValueError) as err:
            last = str(err)
        time.sleep(3)
    log(f"API at {api_url} did not answer GET /v1/health in {timeout_s:.0f} s: {last}")
    return False


def configure(url: str, stage: str, warm_up_s: float) -> int:
    api_id = api_id_of(stack_api_url(url, stage))
    internal = localstack_api_url(api_id)  # from Lambda containers
    external = localstack_api_url(api_id, url)  # from this machine
    key_id, secret = admin_key(stage)
    configure_functions(
        url,
        stage,
        {
            names.ENV_API_URL: internal,
            ENV_FUNCTION_RUNTIME: "lambda",
            ENV_ADMIN_KEY_ID: key_id,
            ENV_ADMIN_SECRET: secret,
        },
    )
    path = write_state(
        stage,
        {
            ENV_LOCALSTACK_URL: url,
            "TREADLE_STAGE": stage,
            ENV_LOCALSTACK_API_URL: external,
            ENV_ADMIN_KEY_ID: key_id,
            ENV_ADMIN_SECRET: secret,
        },
    )
    log(f"API URL (from this machine): {external}")
    log(f"admin credential and URLs written to {path.relative_to(REPO_ROOT)}")
    if warm_up_s > 0 and not warm_up(external, warm_up_s):
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(ENV_LOCALSTACK_URL, DEFAULT_URL),
        help=f"LocalStack's endpoint (default: ${ENV_LOCALSTACK_URL} or {DEFAULT_URL})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    wait_cmd = sub.add_parser("wait", help="wait until LocalStack and its init hooks are ready")
    wait_cmd.add_argument("--timeout", type=float, default=300)
    conf = sub.add_parser("configure", help="fit the deployed stack to LocalStack")
    conf.add_argument("--stage", default=os.environ.get("TREADLE_STAGE", "local"))
    conf.add_argument(
        "--warm-up", type=float, default=600, help="seconds to wait for the API (0: do not)"
    )
    args = parser.parse_args()
    url = args.url.rstrip("/")
    # Only LocalStack's "test" credentials are used here: a profile meant for AWS (or one
    # that does not exist) must not get in the way.
    for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(variable, None)
    if args.command == "wait":
        return wait(url, args.timeout)
    return configure(url, names.validate_stage(args.stage), args.warm_up)


if __name__ == "__main__":
    sys.exit(main())
