"""Console sessions: the pair is checked, the cookie is signed and expires, the key is
re-checked on every request, and the CSRF tokens are per session."""

from __future__ import annotations

from unittest import mock

from itsdangerous import URLSafeTimedSerializer

from treadle.console.session import Sessions, cookie_header, csrf_ok, read_cookie
from treadle.tenancy.ports import KeySecret

SECRET = b"s" * 32


class Keys:
    """A real, mutable key table: what TenantAdmin.lookup_secret answers."""

    def __init__(self) -> None:
        self.active: dict[str, KeySecret] = {"AKIATENANT": KeySecret("111122223333", "tsecret")}

    def __call__(self, key_id: str) -> KeySecret | None:
        return self.active.get(key_id)


def sessions(keys: Keys) -> Sessions:
    return Sessions(SECRET, tenant_keys=keys, admin_key=("AKIAADMIN", "asecret"))


def test_a_right_pair_logs_in_a_wrong_one_does_not() -> None:
    s = sessions(Keys())
    assert s.login("AKIATENANT", "wrong") is None
    assert s.login("AKIAUNKNOWN", "tsecret") is None
    made = s.login("AKIATENANT", "tsecret")
    assert made is not None
    session, cookie = made
    assert session.tenant == "111122223333" and not session.admin
    assert "tsecret" not in cookie
    admin = s.login("AKIAADMIN", "asecret")
    assert admin is not None and admin[0].admin


def test_the_cookie_names_the_session_until_the_key_is_disabled_or_rotated() -> None:
    keys = Keys()
    s = sessions(keys)
    made = s.login("AKIATENANT", "tsecret")
    assert made is not None
    session, cookie = made
    assert s.principal(cookie) == session
    keys.active["AKIATENANT"] = KeySecret("111122223333", "rotated")
    assert s.principal(cookie) is None
    del keys.active["AKIATENANT"]
    assert s.principal(cookie) is None


def test_a_tampered_foreign_or_expired_cookie_is_no_session() -> None:
    s = sessions(Keys())
    made = s.login("AKIATENANT", "tsecret")
    assert made is not None
    _session, cookie = made
    assert s.principal(cookie[:-2] + "xx") is None
    forged = URLSafeTimedSerializer("other key", salt="console-session").dumps(
        {"k": "AKIATENANT", "f": "x", "c": "y"}
    )
    assert s.principal(forged) is None
    assert s.principal(None) is None
    with mock.patch("itsdangerous.timed.time.time", return_value=10**11):
        assert s.principal(cookie) is None  # far past its max age


def test_csrf_tokens_are_per_session_and_the_login_token_is_double_submitted() -> None:
    s = sessions(Keys())
    a, b = s.login("AKIATENANT", "tsecret"), s.login("AKIATENANT", "tsecret")
    assert a is not None and b is not None
    assert csrf_ok(a[0], a[0].csrf)
    assert not csrf_ok(a[0], b[0].csrf)
    assert not csrf_ok(a[0], None) and not csrf_ok(a[0], "")
    token, signed = s.login_token()
    assert s.login_token_ok(signed, token)
    assert not s.login_token_ok(signed, "other")
    assert not s.login_token_ok(None, token)


def test_the_cookie_header_is_http_only_strict_and_secure_over_https() -> None:
    plain = cookie_header("c", "v", secure=False, max_age=60)
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Path=/console" in plain
    assert "Secure" not in plain and "Max-Age=60" in plain
    assert "Secure" in cookie_header("c", "v", secure=True, max_age=60)
    assert read_cookie("a=1; c=v2; d=3", "c") == "v2"
    assert read_cookie(None, "c") is None
