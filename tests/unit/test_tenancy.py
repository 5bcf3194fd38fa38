"""Tenant administration, Basic auth for Git, the credentials file and quotas."""

from __future__ import annotations

import base64
import calendar
import configparser
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydantic import ValidationError

from support.fakes import ManualClock
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.api.errors import classify, text_error
from treadle.api.http import Request
from treadle.app.quotas import TenantQuotas
from treadle.domain.errors import Throttled, TreadleError
from treadle.domain.models import ExecutionLimits
from treadle.tenancy.admin import QuotaGuard, TenantAdmin, ensure_dev_tenant, single_key_lookup
from treadle.tenancy.basic import verify_basic
from treadle.tenancy.credentials import read_profile, write_shared_credentials
from treadle.tenancy.errors import (
    BasicAuthRequired,
    CodeStorageExceeded,
    RateExceeded,
    ServiceQuotaExceeded,
    TenancyError,
    UnrecognizedClient,
)
from treadle.tenancy.models import (
    ACCESS_KEY_ID_PATTERN,
    AccessKey,
    Quotas,
    Tenant,
    new_access_key,
    new_account_id,
)
from treadle.tenancy.sigv4 import verify_sigv4


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[TenantAdmin]:
    store = SqliteTenantStore(tmp_path / "tenants.sqlite")
    yield TenantAdmin(store, ManualClock(1_700_000_000_000))
    store.close()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _signed(key: AccessKey) -> tuple[Request, int]:
    """A request signed with the key as the lambda client would, and the ms it was signed."""
    aws = AWSRequest(
        method="POST", url="http://localhost:9000/2015-03-31/functions/f/invocations", data=b"{}"
    )
    creds = Credentials(key.access_key_id, key.secret.get_secret_value())
    SigV4Auth(creds, "lambda", "us-east-1").add_auth(aws)
    headers = {k.lower(): v for k, v in aws.headers.items()} | {"host": "localhost:9000"}
    request = Request.build("POST", "/2015-03-31/functions/f/invocations", "", headers, b"{}")
    now = calendar.timegm(time.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")) * 1000
    return request, now


# -- models ---------------------------------------------------------------------------------


def test_generated_identifiers_look_like_aws() -> None:
    key = new_access_key(new_account_id(), 0)
    assert len(key.tenant) == 12 and key.tenant.isdigit() and key.tenant[0] != "0"
    assert key.access_key_id.startswith("AKIA") and len(key.access_key_id) == 20
    assert len(key.secret.get_secret_value()) == 40
    assert key.secret.get_secret_value().isalnum()
    assert key.secret.get_secret_value() not in repr(key)  # never in logs
    with pytest.raises(ValidationError):
        Tenant(account_id="12345", name="x", created_ms=0)
    with pytest.raises(ValidationError):
        AccessKey.model_validate({**key.model_dump(), "access_key_id": "akia" + "A" * 16})
    assert ACCESS_KEY_ID_PATTERN.startswith("^AKIA")


def test_errors_map_to_aws_codes_and_statuses() -> None:
    for err, code, status in [
        (UnrecognizedClient(), "UnrecognizedClientException", 403),
        (BasicAuthRequired("x"), "UnrecognizedClientException", 401),
        (CodeStorageExceeded("x"), "CodeStorageExceededException", 400),
        (ServiceQuotaExceeded("x"), "ServiceQuotaExceededException", 402),
        (RateExceeded("x", reason="r", retry_after_s=1), "TooManyRequestsException", 429),
    ]:
        assert isinstance(err, TenancyError) and isinstance(err, TreadleError)
        assert classify(err)[:2] == (status, code)
    assert isinstance(RateExceeded("x", reason="r", retry_after_s=1), Throttled)


# -- administration ---------------------------------------------------------------------------


def test_a_new_tenant_comes_with_one_active_key(admin: TenantAdmin) -> None:
    tenant, key = admin.create_tenant("acme")
    assert key.tenant == tenant.account_id and key.active
    assert admin.list_keys(tenant.account_id) == [key]
    assert admin.get_tenant(tenant.account_id).quotas == Quotas()
    found = admin.lookup_secret(key.access_key_id)
    assert found == (tenant.account_id, key.secret.get_secret_value())


def test_a_signed_request_needs_an_active_key_of_an_enabled_tenant(admin: TenantAdmin) -> None:
    tenant, key = admin.create_tenant("acme")
    request, now = _signed(key)

    def verify() -> tuple[str, str]:
        return verify_sigv4(request, admin.lookup_secret, now, replay_guard=None)

    assert verify() == (tenant.account_id, key.access_key_id)

    admin.disable_key(tenant.account_id, key.access_key_id)
    with pytest.raises(UnrecognizedClient):
        verify()
    admin.enable_key(tenant.account_id, key.access_key_id)
    admin.disable_tenant(tenant.account_id)
    with pytest.raises(UnrecognizedClient):
        verify()
    admin.enable_tenant(tenant.account_id)
    assert verify()


def test_rotation_swaps_which_key_signs(admin: TenantAdmin) -> None:
    tenant, old = admin.create_tenant("acme")
    new = admin.rotate_key(tenant.account_id, old.access_key_id)
    assert [k.access_key_id for k in admin.list_keys(tenant.account_id) if k.active] == [
        new.access_key_id
    ]
    old_request, old_now = _signed(old)
    with pytest.raises(UnrecognizedClient):
        verify_sigv4(old_request, admin.lookup_secret, old_now, replay_guard=None)
    request, now = _signed(new)
    assert verify_sigv4(request, admin.lookup_secret, now, replay_guard=None)[1] == (
        new.access_key_id
    )


class _Counts:
    """The two counts TenantQuotas reads, without stores."""

    def count_running(self, tenant: str) -> int:
        return 0

    def usage(self, tenant: str) -> tuple[int, int]:
        return 0, 0


def test_a_start_is_given_its_tenants_limits_per_execution_aws_by_default(
    admin: TenantAdmin,
) -> None:
    quotas = TenantQuotas(admin, executions=_Counts(), functions=_Counts())  # type: ignore[arg-type]
    tenant, _ = admin.create_tenant("acme")
    assert quotas.check_start(tenant.account_id) == ExecutionLimits(
        max_operations=3000, max_history_bytes=100 * 1024 * 1024, max_payload_bytes=256 * 1024
    )
    admin.update_quotas(
        tenant.account_id,
        {"max_operations_per_execution": 5, "max_payload_bytes_per_operation": 1024},
    )
    assert quotas.check_start(tenant.account_id) == ExecutionLimits(
        max_operations=5, max_history_bytes=100 * 1024 * 1024, max_payload_bytes=1024
    )
    too_big = {"max_payload_bytes_per_operation": 6 * 1024 * 1024 + 1}
    for bad in ({"max_operations_per_execution": 0}, {"max_history_bytes_per_execution": 0}):
        with pytest.raises(ValidationError):
            admin.update_quotas(tenant.account_id, bad)
    with pytest.raises(ValidationError):
        admin.update_quotas(tenant.account_id, too_big)


def test_quotas_update_partially_and_are_validated(admin: TenantAdmin) -> None:
    tenant, _ = admin.create_tenant("acme")
    updated = admin.update_quotas(tenant.account_id, {"max_functions": 3})
    assert updated.quotas.max_functions == 3
    assert updated.quotas.max_code_bytes == Quotas().max_code_bytes
    assert admin.get_tenant(tenant.account_id).quotas.max_functions == 3
    for bad in ({"max_functions": -1}, {"max_starts_per_second": 0}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            admin.update_quotas(tenant.account_id, bad)


def test_the_queued_starts_quota_defaults_to_100000_and_can_be_changed(
    admin: TenantAdmin,
) -> None:
    tenant, _ = admin.create_tenant("acme")
    assert tenant.quotas.max_queued == 100_000
    assert admin.update_quotas(tenant.account_id, {"max_queued": 5}).quotas.max_queued == 5
    assert admin.get_tenant(tenant.account_id).quotas.max_queued == 5
    # Quotas stored before the field existed read with its default.
    assert Quotas.model_validate_json('{"max_functions": 1}').max_queued == 100_000
    with pytest.raises(ValidationError):
        admin.update_quotas(tenant.account_id, {"max_queued": -1})


def test_the_admin_credential_lookup_knows_one_key() -> None:
    lookup = single_key_lookup("AKIAADMINADMINADMIN2", "s" * 40, "platform-admin")
    assert lookup("AKIAADMINADMINADMIN2") == ("platform-admin", "s" * 40)
    assert lookup("AKIAOTHEROTHEROTHER2") is None


# -- Basic auth (Git over HTTP) -----------------------------------------------------------------


def test_basic_auth_with_the_key_pair(admin: TenantAdmin) -> None:
    tenant, key = admin.create_tenant("acme")
    secret = key.secret.get_secret_value()
    assert verify_basic(_basic(key.access_key_id, secret), admin.lookup_secret) == (
        tenant.account_id
    )
    refusals = [
        None,
        "",
        "Bearer abc",
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        _basic(key.access_key_id, secret[:-1] + "x"),
        _basic(key.access_key_id, ""),
        _basic("AKIAUNKNOWNUNKNOWN22", secret),
    ]
    for header in refusals:
        with pytest.raises(BasicAuthRequired) as err:
            verify_basic(header, admin.lookup_secret)
        refusal = text_error(err.value)
        assert refusal.status == 401
        assert refusal.headers["www-authenticate"].startswith("Basic realm=")
    # Unknown key and wrong secret read the same: no key-id oracle on the Git side.
    messages = set()
    for header in refusals[-3:]:
        with pytest.raises(BasicAuthRequired) as err:
            verify_basic(header, admin.lookup_secret)
        messages.add(err.value.message)
    assert len(messages) == 1
    admin.disable_key(tenant.account_id, key.access_key_id)
    with pytest.raises(BasicAuthRequired):
        verify_basic(_basic(key.access_key_id, secret), admin.lookup_secret)


# -- the shared credentials file ----------------------------------------------------------------


def _clean_aws_env(monkeypatch: pytest.MonkeyPatch, creds: Path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(creds.parent / "no-config"))


def test_the_credentials_file_is_aws_format_and_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "data" / "credentials"
    write_shared_credentials(path, "treadle", "AKIAABCDEFGHIJKLMNOP", "se%cr/et+", "eu-west-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("[treadle]\naws_access_key_id = AKIAABCDEFGHIJKLMNOP\n")
    parser = configparser.RawConfigParser()
    parser.read(path)
    assert dict(parser["treadle"]) == {
        "aws_access_key_id": "AKIAABCDEFGHIJKLMNOP",
        "aws_secret_access_key": "se%cr/et+",
        "region": "eu-west-1",
    }
    _clean_aws_env(monkeypatch, path)
    session = boto3.Session(profile_name="treadle")
    frozen = session.get_credentials().get_frozen_credentials()  # type: ignore[union-attr]
    assert (frozen.access_key, frozen.secret_key) == ("AKIAABCDEFGHIJKLMNOP", "se%cr/et+")
    assert frozen.token is None
    assert session.region_name == "eu-west-1"
    assert [p for p in os.listdir(path.parent)] == ["credentials"]  # no temp or lock files


def test_other_profiles_survive_and_ours_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "credentials"
    path.write_text(
        "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n\n"
        "[treadle]\naws_access_key_id = OLD\naws_secret_access_key = old\n"
        "aws_session_token = stale\n"
    )
    os.chmod(path, 0o644)
    write_shared_credentials(path, "treadle", "AKIANEWNEWNEWNEWNEW2", "new", None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_profile(path, "default") == {
        "aws_access_key_id": "AKIADEFAULT",
        "aws_secret_access_key": "d",
    }
    assert read_profile(path, "treadle") == {
        "aws_access_key_id": "AKIANEWNEWNEWNEWNEW2",
        "aws_secret_access_key": "new",
    }
    assert read_profile(path, "absent") is None
    _clean_aws_env(monkeypatch, path)
    default = boto3.Session().get_credentials()
    assert default is not None and default.access_key == "AKIADEFAULT"


def test_a_malformed_file_is_not_clobbered(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text("this is not an ini file\n")
    with pytest.raises(configparser.Error):
        write_shared_credentials(path, "treadle", "AKIAX", "s", None)
    assert path.read_text() == "this is not an ini file\n"


def test_writing_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real-credentials"
    link = tmp_path / "credentials"
    link.symlink_to(real)
    write_shared_credentials(link, "treadle", "AKIAX", "s", None)
    assert link.is_symlink() and read_profile(real, "treadle") is not None


def test_the_dev_tenant_is_created_once(admin: TenantAdmin, tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    tenant, key = ensure_dev_tenant(admin, creds, account_id="123456789012", region="us-east-1")
    assert tenant.account_id == "123456789012" and tenant.name == "default"
    profile = read_profile(creds, "treadle")
    assert profile == {
        "aws_access_key_id": key.access_key_id,
        "aws_secret_access_key": key.secret.get_secret_value(),
        "region": "us-east-1",
    }
    creds.write_text(creds.read_text().replace("us-east-1", "eu-north-1"))  # a user's edit
    again, same = ensure_dev_tenant(admin, creds, account_id="123456789012", region="us-east-1")
    assert (again, same.access_key_id) == (tenant, key.access_key_id)
    assert read_profile(creds, "treadle") == {**profile, "region": "eu-north-1"}
    assert len(admin.list_keys(tenant.account_id)) == 1
    # After a rotation the profile names a dead key: the next start writes the live one.
    new = admin.rotate_key(tenant.account_id, key.access_key_id)
    ensure_dev_tenant(admin, creds, account_id="123456789012", region="us-east-1")
    assert (read_profile(creds, "treadle") or {})["aws_access_key_id"] == new.access_key_id


# -- quotas ----------------------------------------------------------------------------------------


def _tenant(**quotas: Any) -> Tenant:
    return Tenant(account_id="123456789012", name="t", created_ms=0, quotas=Quotas(**quotas))


def test_starts_are_a_token_bucket_per_tenant() -> None:
    clock = [100.0]
    guard = QuotaGuard(monotonic=lambda: clock[0])
    tenant = _tenant(max_starts_per_second=2)
    other = _tenant(max_starts_per_second=2).model_copy(update={"account_id": "210987654321"})
    guard.check_starts(tenant)
    guard.check_starts(tenant)  # a burst of one second's worth
    with pytest.raises(RateExceeded) as err:
        guard.check_starts(tenant)
    assert classify(err.value)[:2] == (429, "TooManyRequestsException")
    assert err.value.reason == "CallerRateLimitExceeded" and err.value.retry_after_s == 0.5
    assert err.value.retryable
    guard.check_starts(other)  # buckets are per tenant
    clock[0] += 0.5
    guard.check_starts(tenant)
    with pytest.raises(RateExceeded):
        guard.check_starts(tenant)
    slow = _tenant(max_starts_per_second=0.5).model_copy(update={"account_id": "555555555555"})
    guard.check_starts(slow)  # capacity is at least one start
    with pytest.raises(RateExceeded) as slow_err:
        guard.check_starts(slow)
    assert slow_err.value.retry_after_s == 2.0


def test_count_quotas_use_lambdas_error_codes() -> None:
    tenant = _tenant(max_functions=2, max_code_bytes=100, max_running_executions=1)
    QuotaGuard.check_functions(tenant, 2)
    QuotaGuard.check_code_bytes(tenant, 100)
    QuotaGuard.check_running(tenant, 1)
    with pytest.raises(ServiceQuotaExceeded):
        QuotaGuard.check_functions(tenant, 3)
    with pytest.raises(CodeStorageExceeded, match=r"^Code storage limit exceeded"):
        QuotaGuard.check_code_bytes(tenant, 101)
    with pytest.raises(RateExceeded) as err:
        QuotaGuard.check_running(tenant, 2)
    assert err.value.reason == "ConcurrentInvocationLimitExceeded"
