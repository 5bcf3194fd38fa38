"""Egress policies: what the admin's change does, and the packet filter rules they become.

The kernel's side (links, nftables, reaching or not) is `test_escape_egress.py`, as root.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from support.fakes import ManualClock
from treadle.adapters.sandbox.egress import EgressError, nameservers, policy_rules
from treadle.adapters.sandbox.identity import Confinement
from treadle.adapters.sqlite.tenants import SqliteTenantStore
from treadle.api.errors import classify
from treadle.domain.errors import InvalidParameter
from treadle.tenancy.admin import TenantAdmin
from treadle.tenancy.models import Egress


class Enforcer:
    """A host that enforces what it is told to, or refuses all but `none`."""

    def __init__(self, refusal: str | None = None) -> None:
        self.refusal = refusal
        self.applied: list[tuple[str, Egress]] = []

    def egress_refusal(self, egress: Egress) -> str | None:
        return self.refusal

    def apply_egress(self, account_id: str, egress: Egress) -> None:
        self.applied.append((account_id, egress))


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[TenantAdmin]:
    store = SqliteTenantStore(tmp_path / "tenants.sqlite")
    admin = TenantAdmin(store, ManualClock())
    admin.create_tenant("t", account_id="123456789012")
    yield admin
    store.close()


def test_a_policy_is_stored_then_applied_to_the_tenants_code(admin: TenantAdmin) -> None:
    enforcer = Enforcer()
    admin.enforce_egress_with(enforcer)
    assert admin.update_egress("123456789012", ["10.0.0.0/8"]).egress == ["10.0.0.0/8"]
    assert enforcer.applied == [("123456789012", ["10.0.0.0/8"])]
    assert admin.get_tenant("123456789012").egress == ["10.0.0.0/8"]


@pytest.mark.parametrize("enforcer", [None, Enforcer("the host lacks nft")])
def test_a_policy_the_host_cannot_enforce_is_refused_and_not_stored(
    admin: TenantAdmin, enforcer: Enforcer | None
) -> None:
    if enforcer is not None:
        admin.enforce_egress_with(enforcer)
    with pytest.raises(InvalidParameter) as refused:
        admin.update_egress("123456789012", "all")
    assert "cannot be enforced on this host" in refused.value.message
    if enforcer is not None:
        assert "the host lacks nft" in refused.value.message
        assert enforcer.applied == []
    assert classify(refused.value)[0] == 400
    assert admin.get_tenant("123456789012").egress == "none"
    # The default, most restrictive policy is always accepted.
    assert admin.update_egress("123456789012", "none").egress == "none"


def test_an_unprivileged_sandbox_refuses_every_policy_but_none(tmp_path: Path) -> None:
    confinement = Confinement(tmp_path / "work", tmp_path, privileged=False)
    assert confinement.egress_refusal("none") is None
    refusal = confinement.egress_refusal(["10.0.0.0/8"])
    assert refusal is not None and "shares the host's network" in refusal


# -- the rules -------------------------------------------------------------------------

SUBNET = IPv4Network("198.18.0.0/16")


def _rules(policy: Any, **kw: Any) -> list[str]:
    kw.setdefault("resolver", lambda host, port: [])
    kw.setdefault("dns", lambda: [])
    return policy_rules(policy, subnet=SUBNET, **kw)


def test_none_refuses_everything_and_all_everything_but_the_host_and_tenants() -> None:
    assert _rules("none") == ["goto refuse"]
    rules = _rules("all")
    assert rules[-1] == "accept"
    assert "fib daddr type local goto refuse" in rules
    assert "ip daddr { 169.254.0.0/16, 198.18.0.0/16 } goto refuse" in rules


def test_an_allow_list_becomes_one_accept_per_destination_then_the_refusal() -> None:
    rules = _rules(["10.0.0.0/8", "192.0.2.7:53", "[2001:db8::1]:443", "2001:db8::/32"])
    assert rules == [
        "ip daddr 10.0.0.0/8 accept",
        "ip daddr 192.0.2.7 meta l4proto { tcp, udp } th dport 53 accept",
        "ip6 daddr 2001:db8::1 meta l4proto { tcp, udp } th dport 443 accept",
        "ip6 daddr 2001:db8::/32 accept",
        "goto refuse",
    ]


def test_a_named_host_is_resolved_and_lets_dns_through_to_the_hosts_nameservers() -> None:
    asked: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["192.0.2.10", "2001:db8::10"]

    rules = _rules(["api.example.com:443"], resolver=resolver, dns=lambda: ["192.0.2.53"])
    assert asked == [("api.example.com", 443)]
    assert rules == [
        "ip daddr 192.0.2.10 meta l4proto { tcp, udp } th dport 443 accept",
        "ip6 daddr 2001:db8::10 meta l4proto { tcp, udp } th dport 443 accept",
        "ip daddr 192.0.2.53 meta l4proto { tcp, udp } th dport 53 accept",
        "goto refuse",
    ]


def test_a_name_that_does_not_resolve_opens_nothing_and_the_rest_holds() -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise EgressError(f"cannot resolve {host!r}")

    rules = _rules(["nowhere.invalid:443", "10.0.0.0/8"], resolver=resolver)
    assert rules == ["ip daddr 10.0.0.0/8 accept", "goto refuse"]


def test_loopback_nameservers_are_left_out(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\nsearch a\n")
    assert nameservers(conf) == ["192.0.2.53"]
