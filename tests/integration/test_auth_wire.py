"""Authentication on the wire: SigV4 on the Lambda surface, the admin's /v1/tenants, keys.

Everything goes through a real `treadle dev` with boto3 or raw HTTP, as users would.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from support.server import (
    REGION,
    ServerProcess,
    basic,
    client,
    deploy,
    http,
    new_tenant,
    signed,
    v1,
    zip_files,
)

FUNCTIONS = "/2015-03-31/functions"


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    err = exc.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]


def test_an_unsigned_request_is_refused_in_aws_shape(server: ServerProcess) -> None:
    status, headers, body = http(server, "GET", FUNCTIONS)
    assert status == 403
    assert headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert json.loads(body)["message"] == "Missing Authentication Token"


def test_a_wrong_secret_and_an_unknown_key_are_refused(server: ServerProcess) -> None:
    key_id, _secret = server.credentials()
    with pytest.raises(ClientError) as wrong:
        client(server, credentials=(key_id, "x" * 40)).list_functions()
    assert _code(wrong) == (403, "InvalidSignatureException")
    with pytest.raises(ClientError) as unknown:
        client(server, credentials=("AKIAUNKNOWNUNKNOWN22", "x" * 40)).list_functions()
    assert _code(unknown) == (403, "UnrecognizedClientException")


def test_an_old_signed_request_is_refused(server: ServerProcess) -> None:
    """A request captured and replayed later than the allowed skew (5 min) is refused."""
    then = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    status, headers, body = http(
        server, "GET", FUNCTIONS, headers=signed(server, "GET", FUNCTIONS, at=then)
    )
    assert status == 403
    assert headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert "Signature expired" in json.loads(body)["message"]
    # The same request signed now passes: only the date made the difference.
    status, _, _ = http(server, "GET", FUNCTIONS, headers=signed(server, "GET", FUNCTIONS))
    assert status == 200


def test_a_tampered_body_fails_the_signature(server: ServerProcess) -> None:
    payload = json.dumps({"FunctionName": "tampered"}).encode()
    headers = signed(server, "POST", FUNCTIONS, payload, {"content-type": "application/json"})
    status, headers, _ = http(
        server, "POST", FUNCTIONS, payload.replace(b"tampered", b"tampared"), headers
    )
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"


def test_the_credentials_file_works_as_a_shared_credentials_profile(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `treadle dev` prints: AWS_SHARED_CREDENTIALS_FILE + AWS_PROFILE=treadle."""
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(server.data_dir / "credentials"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    session = boto3.Session(profile_name="treadle")
    lam = session.client("lambda", endpoint_url=server.url)
    assert lam.meta.region_name == REGION
    assert "Functions" in lam.list_functions()
    assert (server.data_dir / "credentials").stat().st_mode & 0o077 == 0


def test_the_admin_manages_tenants_and_only_the_admin(server: ServerProcess) -> None:
    admin = server.credentials("treadle-admin")
    account, keys = new_tenant(server, "acme")
    assert len(account) == 12 and account != "123456789012"
    # A tenant key may not manage tenants; the admin key may not use the Lambda surface.
    status, body = v1(server, "GET", "/v1/tenants")
    assert status == 403 and body["error"]["code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as denied:
        client(server, credentials=admin).list_functions()
    assert _code(denied) == (403, "AccessDeniedException")
    # The new tenant signs with its own keys and sees its own (empty) account.
    lam = client(server, credentials=keys)
    assert lam.list_functions()["Functions"] == []
    status, body = v1(server, "GET", f"/v1/tenants/{account}", credentials=admin)
    assert status == 200 and body["name"] == "acme" and body["disabled"] is False
    status, listed = v1(server, "GET", "/v1/tenants?limit=1000", credentials=admin)
    assert account in [t["accountId"] for t in listed["tenants"]]
    # Secrets are shown once, at creation: never in listings.
    status, body = v1(server, "GET", f"/v1/tenants/{account}/keys", credentials=admin)
    assert [k["accessKeyId"] for k in body["accessKeys"]] == [keys[0]]
    assert "secretAccessKey" not in body["accessKeys"][0]
    # Bad input gets a precise message.
    status, body = v1(
        server, "POST", "/v1/tenants", {"name": "x", "accountId": "12"}, credentials=admin
    )
    assert status == 400 and "accountId" in body["error"]["message"]
    status, body = v1(server, "GET", "/v1/tenants/999999999999", credentials=admin)
    assert status == 404


def test_keys_can_be_rotated_and_disabled_and_tenants_disabled(server: ServerProcess) -> None:
    admin = server.credentials("treadle-admin")
    account, keys = new_tenant(server, "rotating")
    status, new = v1(
        server, "POST", f"/v1/tenants/{account}/keys/{keys[0]}/rotate", credentials=admin
    )
    assert status == 201
    rotated = (new["accessKeyId"], new["secretAccessKey"])
    with pytest.raises(ClientError) as old:
        client(server, credentials=keys).list_functions()
    assert _code(old) == (403, "UnrecognizedClientException")
    assert "Functions" in client(server, credentials=rotated).list_functions()
    # Rotating an inactive key is a conflict: two rotations never make two keys.
    status, body = v1(
        server, "POST", f"/v1/tenants/{account}/keys/{keys[0]}/rotate", credentials=admin
    )
    assert status == 409, body
    # Disable then re-enable the key.
    path = f"/v1/tenants/{account}/keys/{rotated[0]}"
    assert v1(server, "PATCH", path, {"status": "Inactive"}, credentials=admin)[0] == 200
    with pytest.raises(ClientError):
        client(server, credentials=rotated).list_functions()
    assert v1(server, "PATCH", path, {"status": "Active"}, credentials=admin)[0] == 200
    assert "Functions" in client(server, credentials=rotated).list_functions()
    # A disabled tenant's keys all stop working; quotas are changed in place.
    status, body = v1(
        server,
        "PATCH",
        f"/v1/tenants/{account}",
        {"disabled": True, "quotas": {"maxFunctions": 3}},
        credentials=admin,
    )
    assert status == 200 and body["disabled"] is True and body["quotas"]["maxFunctions"] == 3
    with pytest.raises(ClientError) as disabled:
        client(server, credentials=rotated).list_functions()
    assert _code(disabled) == (403, "UnrecognizedClientException")


SANDBOX_PROBE = """
import boto3
from botocore.exceptions import ClientError

def handler(event, context):
    try:
        boto3.client("lambda").list_functions()
        return "listed"
    except ClientError as e:
        return e.response["Error"]["Code"]
"""


def test_sandbox_credentials_reach_only_the_checkpoint_api(lam: Any) -> None:
    """Tenant code signs with its sandbox key: it may checkpoint (see test_bad_input's
    probe), not use the rest of the API, as the tenant role on AWS."""
    deploy(lam, "sandbox-probe", {"handler.py": SANDBOX_PROBE}, durable=False)
    out = lam.invoke(FunctionName="sandbox-probe", Payload=b"{}")
    assert json.loads(out["Payload"].read()) == "AccessDeniedException"


def test_settings_refuse_half_an_admin_key(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", env={"TREADLE_ADMIN_ACCESS_KEY_ID": "AKIAONLYHALF2345"})
    with pytest.raises(RuntimeError):
        srv.start()
    assert "TREADLE_ADMIN_SECRET_ACCESS_KEY" in srv.log_path.read_text()


def test_git_asks_for_basic_credentials_and_refuses_wrong_ones(server: ServerProcess) -> None:
    path = "/git/123456789012/anything.git/info/refs?service=git-upload-pack"
    status, headers, _ = http(server, "GET", path)
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    key_id, _ = server.credentials()
    status, _, body = http(server, "GET", path, headers=basic((key_id, "wrong")))
    assert status == 401 and b"Invalid access key id or secret" in body
    status, _, body = http(server, "GET", path, headers=basic(server.credentials()))
    assert status == 404 and b"does not exist" in body


# Busy in a step for a minute: it holds its invocation, so it counts as running (a
# parked execution would not, and would let the queued starts run).
BUSY = """
import time
from aws_durable_execution_sdk_python import DurableContext, durable_execution

@durable_execution
def handler(event, context: DurableContext):
    return context.step(lambda _: time.sleep(60), name="hold")
"""


def test_starts_over_the_running_quota_queue_and_429_past_max_queued(
    server: ServerProcess,
) -> None:
    admin = server.credentials("treadle-admin")
    quotas = {"maxRunningExecutions": 1, "maxStartsPerSecond": 100, "maxQueued": 2}
    status, body = v1(
        server, "POST", "/v1/tenants", {"name": "small", "quotas": quotas}, credentials=admin
    )
    assert status == 201 and body["tenant"]["quotas"]["maxQueued"] == 2
    keys = (body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"])
    lam = client(server, credentials=keys, retries={"max_attempts": 1})
    deploy(lam, "holder", {"handler.py": BUSY}, timeout=90)

    def start() -> str:
        out = lam.invoke(FunctionName="holder", InvocationType="Event", Payload=b"{}")
        assert out["StatusCode"] == 202
        return str(out["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"])

    def status_of(arn: str) -> str:
        return str(lam.get_durable_execution(DurableExecutionArn=arn)["Status"])

    running = start()
    queued = [start(), start()]  # over the running quota: accepted, QUEUED
    assert [status_of(a) for a in queued] == ["QUEUED", "QUEUED"]
    listed = lam.list_durable_executions_by_function(FunctionName="holder", Statuses=["QUEUED"])
    assert sorted(e["DurableExecutionArn"] for e in listed["DurableExecutions"]) == sorted(queued)
    with pytest.raises(ClientError) as refused:
        start()
    assert _code(refused) == (429, "TooManyRequestsException")
    assert "2 queued executions" in refused.value.response["Error"]["Message"]
    # Capacity frees: the oldest queued start runs, the other keeps its place.
    lam.stop_durable_execution(DurableExecutionArn=running)
    deadline = time.monotonic() + 60
    while status_of(queued[0]) == "QUEUED" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [status_of(a) for a in queued] == ["RUNNING", "QUEUED"]
    # A queued start can be stopped; it never runs.
    lam.stop_durable_execution(DurableExecutionArn=queued[1])
    assert status_of(queued[1]) == "STOPPED"


def test_the_aws_cli_works_with_what_treadle_dev_prints(server: ServerProcess, lam: Any) -> None:
    """`export AWS_SHARED_CREDENTIALS_FILE=... AWS_PROFILE=treadle AWS_ENDPOINT_URL=...`."""
    deploy(lam, "cli-visible", {"handler.py": "def handler(e, c):\n    return 1\n"}, durable=False)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") or k == "AWS_EC2_METADATA_DISABLED"
    }
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(server.data_dir / "credentials"),
        "AWS_PROFILE": "treadle",
        "AWS_ENDPOINT_URL": server.url,
        "AWS_CONFIG_FILE": os.devnull,
    }
    aws = str(Path(sys.executable).with_name("aws"))
    out = subprocess.run(
        [aws, "lambda", "list-functions"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "cli-visible" in [f["FunctionName"] for f in json.loads(out.stdout)["Functions"]]
    env["AWS_PROFILE"] = "treadle-admin"
    out = subprocess.run(
        [aws, "lambda", "list-functions"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0 and "AccessDeniedException" in out.stderr


def test_quotas_on_functions_and_code_bytes(server: ServerProcess) -> None:
    admin = server.credentials("treadle-admin")
    status, body = v1(
        server,
        "POST",
        "/v1/tenants",
        {"name": "tiny", "quotas": {"maxFunctions": 1, "maxCodeBytes": 4000}},
        credentials=admin,
    )
    assert status == 201
    keys = (body["accessKey"]["accessKeyId"], body["accessKey"]["secretAccessKey"])
    lam = client(server, credentials=keys)
    small = {"handler.py": "def handler(e, c):\n    return 1\n"}
    deploy(lam, "first", small, durable=False)
    with pytest.raises(ClientError) as second:
        deploy(lam, "second", small, durable=False)
    assert _code(second) == (402, "ServiceQuotaExceededException")
    big = {"handler.py": "def handler(e, c):\n    return 1\n", "pad.bin": os.urandom(6000).hex()}
    with pytest.raises(ClientError) as storage:
        lam.update_function_code(FunctionName="first", ZipFile=zip_files(big))
    assert _code(storage) == (400, "CodeStorageExceededException")
    # Refused before anything was stored: the function still runs its first code.
    assert json.loads(lam.invoke(FunctionName="first", Payload=b"{}")["Payload"].read()) == 1
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["first"]
