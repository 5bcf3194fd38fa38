"""Egress policies, enforced by the kernel: the allowed destination is reachable, others not.

Through a real `treadle dev` as root, next to an "outside" host the test makes (a network
namespace of its own, 203.0.113.2, behind the machine): tenant B's probe connects to
the outside host's two services, to services on the machine itself (its loopback, its
own address), to the metadata address and to the sandbox subnet, and tries to change
its own network; tenant A, at the default policy, tries the outside too. The admin
changes B's policy between probes: the worker stays warm, the change applies to it.

Needs root, network namespaces, and `ip`, `nft` and `nsenter` (`.ci/run` installs
nftables); skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.server import ServerProcess, client, deploy, new_tenant, v1
from treadle.adapters.sandbox import egress, netns

pytestmark = [
    pytest.mark.skipif(
        not (os.geteuid() == 0 and netns.available() and not egress.missing_tools()),
        reason="egress policies need root, network namespaces and ip/nft/nsenter",
    ),
    pytest.mark.xdist_group("egress"),  # one worker makes tenant links at a time
]

# The outside host's /30 comes from TEST-NET-3 (never a real network), one no other run
# on this host holds: test runs of other checkouts may make theirs at the same time.
TEST_NET = ipaddress.IPv4Network("203.0.113.0/24")

PROBE = """
import fcntl, json, socket, struct, time


def tcp(host, port):
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            result = "connected from " + conn.recv(64).decode()
    except OSError as exc:
        result = type(exc).__name__
    return {"result": result, "seconds": round(time.monotonic() - started, 3)}


def tamper():
    # Take its link down (CAP_NET_ADMIN) or open a raw socket (CAP_NET_RAW): both refused.
    seen = {}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, 0x8914, struct.pack("16sh14x", b"eth0", 0))
        seen["link_down"] = "done"
    except OSError as exc:
        seen["link_down"] = type(exc).__name__
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
        seen["raw_socket"] = "opened"
    except OSError as exc:
        seen["raw_socket"] = type(exc).__name__
    return seen


def handler(event, context):
    report = {name: tcp(host, port) for name, (host, port) in event["targets"].items()}
    return {"tcp": report, "tamper": tamper()}
"""


class _Service:
    """A TCP service that answers each connection with the address it came from."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.sendall(peer[0].encode())

    def close(self) -> None:
        self.sock.close()


def _in_namespace(path: str, make: Any) -> Any:
    """Run `make` in a thread that joined the namespace: what it creates stays there."""
    made: list[Any] = []
    thread = threading.Thread(target=lambda: (netns.join(path), made.append(make())))
    thread.start()
    thread.join()
    return made[0]


@dataclass
class Outside:
    allowed: _Service
    other: _Service
    host: str  # the machine's address on the outside link
    address: str  # the outside host's


def _free_outside_network() -> ipaddress.IPv4Network:
    routes = json.loads(
        subprocess.run(
            ["ip", "-4", "-j", "route"], capture_output=True, text=True, check=True
        ).stdout
        or "[]"
    )
    taken = []
    for route in routes:
        with contextlib.suppress(ValueError):
            taken.append(ipaddress.IPv4Network(route.get("dst", ""), strict=False))
    candidates = list(TEST_NET.subnets(new_prefix=30))
    random.shuffle(candidates)
    return next(n for n in candidates if not any(n.overlaps(t) for t in taken))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    name, link = f"treadle-out-{os.getpid()}", f"tout{os.getpid() % 100_000}"
    network = _free_outside_network()
    host, address = str(network.network_address + 1), str(network.network_address + 2)
    _ip("netns", "add", name)
    try:
        _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("addr", "add", f"{host}/30", "dev", link)
        _ip("link", "set", link, "up")
        _ip("-n", name, "addr", "add", f"{address}/30", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        path = f"/run/netns/{name}"
        services = _in_namespace(
            path, lambda: [socket.create_server(("0.0.0.0", 0)) for _ in range(2)]
        )
        allowed, other = (_Service(s) for s in services)
        yield Outside(allowed, other, host, address)
        allowed.close()
        other.close()
    finally:
        _ip("netns", "del", name)  # its end of the veth pair goes with it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("egress") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tenants(server: ServerProcess) -> tuple[str, Any, Any]:
    """B's account id and Lambda client, and A's (the default tenant's) client."""
    account, keys = new_tenant(server, "egress-b")
    a, b = client(server), client(server, credentials=keys)
    for lam in (a, b):
        deploy(lam, "egress", {"handler.py": PROBE}, durable=False)
    return account, a, b


@pytest.fixture(scope="module")
def host_services() -> Iterator[dict[str, _Service]]:
    services = {
        "loopback": _Service(socket.create_server(("127.0.0.1", 0))),
        "any": _Service(socket.create_server(("0.0.0.0", 0))),
    }
    yield services
    for service in services.values():
        service.close()


def _set_policy(server: ServerProcess, account: str, policy: Any) -> dict[str, Any]:
    admin = server.credentials("treadle-admin")
    path = f"/v1/tenants/{account}"
    status, body = v1(server, "PATCH", path, {"egress": policy}, credentials=admin)
    assert status == 200, body
    return dict(body)


def _probe(lam: Any, targets: dict[str, tuple[str, int]]) -> dict[str, Any]:
    resp = lam.invoke(FunctionName="egress", Payload=json.dumps({"targets": targets}))
    assert "FunctionError" not in resp, resp["Payload"].read()
    return dict(json.loads(resp["Payload"].read()))


def _targets(outside: Outside, host: dict[str, _Service]) -> dict[str, tuple[str, int]]:
    return {
        "allowed": (outside.address, outside.allowed.port),
        "other_port": (outside.address, outside.other.port),
        "host_loopback": ("127.0.0.1", host["loopback"].port),
        "host_address": (outside.host, host["any"].port),  # the machine's own address
        "metadata": ("169.254.169.254", 80),
        "sandbox_subnet": ("198.18.255.254", 80),  # other tenants' links are numbered there
    }


def _refused(report: dict[str, Any], *names: str) -> None:
    for name in names:
        got = report["tcp"][name]
        assert not got["result"].startswith("connected"), (name, got)
        assert got["seconds"] < 1.0, (name, got)  # refused at once, not timed out


def test_an_allow_list_reaches_its_destination_only(
    server: ServerProcess,
    outside: Outside,
    tenants: tuple[str, Any, Any],
    host_services: dict[str, _Service],
) -> None:
    account, a, b = tenants
    allowed = f"{outside.address}:{outside.allowed.port}"
    assert _set_policy(server, account, [allowed])["egress"] == [allowed]
    before = {name: s.accepted for name, s in host_services.items()}
    report = _probe(b, _targets(outside, host_services))
    # Masqueraded: the outside sees the machine's address, not the tenant's.
    assert report["tcp"]["allowed"]["result"] == f"connected from {outside.host}"
    _refused(report, "other_port", "host_loopback", "host_address", "metadata", "sandbox_subnet")
    assert report["tamper"] == {"link_down": "PermissionError", "raw_socket": "PermissionError"}
    # A, at the default policy, has no way out at all.
    a_report = _probe(a, _targets(outside, host_services))
    assert set(a_report["tcp"]) == set(report["tcp"])
    _refused(a_report, *a_report["tcp"])
    assert {name: s.accepted for name, s in host_services.items()} == before
    assert outside.other.accepted == 0


def test_all_reaches_the_outside_but_not_the_host_nor_other_tenants(
    server: ServerProcess,
    outside: Outside,
    tenants: tuple[str, Any, Any],
    host_services: dict[str, _Service],
) -> None:
    account, _, b = tenants
    _set_policy(server, account, "all")
    report = _probe(b, _targets(outside, host_services))
    for name in ("allowed", "other_port"):
        assert report["tcp"][name]["result"] == f"connected from {outside.host}", name
    _refused(report, "host_loopback", "host_address", "metadata", "sandbox_subnet")
    assert report["tamper"] == {"link_down": "PermissionError", "raw_socket": "PermissionError"}


def test_back_to_none_cuts_the_warm_worker_off(
    server: ServerProcess,
    outside: Outside,
    tenants: tuple[str, Any, Any],
    host_services: dict[str, _Service],
) -> None:
    account, _, b = tenants
    _set_policy(server, account, "all")
    assert _probe(b, _targets(outside, host_services))["tcp"]["allowed"]["result"].startswith(
        "connected"
    )
    _set_policy(server, account, "none")
    report = _probe(b, _targets(outside, host_services))
    _refused(report, *report["tcp"])
    assert report["tcp"]["allowed"]["result"] == "OSError"  # ENETUNREACH: no link at all


def _links() -> set[str]:
    return {name for name in os.listdir("/sys/class/net") if name.startswith(egress.LINK_PREFIX)}


def _chains() -> set[str]:
    shown = subprocess.run(
        ["nft", "-j", "list", "table", *egress.TABLE.split()], capture_output=True, text=True
    )
    if shown.returncode != 0:
        return set()
    entries = json.loads(shown.stdout)["nftables"]
    return {
        e["chain"]["name"]
        for e in entries
        if "chain" in e and e["chain"]["name"].startswith(egress.LINK_PREFIX)
    }


def test_links_and_rules_go_with_the_platform(
    tmp_path_factory: pytest.TempPathFactory, outside: Outside
) -> None:
    srv = ServerProcess(tmp_path_factory.mktemp("egress-close") / "data")
    srv.start()
    try:
        lam = client(srv)
        _set_policy(srv, "123456789012", "all")  # the default tenant of `treadle dev`
        deploy(lam, "egress", {"handler.py": PROBE}, durable=False)
        report = _probe(lam, {"allowed": (outside.address, outside.allowed.port)})
        assert report["tcp"]["allowed"]["result"].startswith("connected")
        link = _host_end(srv.data_dir / "sandbox" / "netns" / "123456789012")
        assert link in _links() and link in _chains()
    finally:
        srv.stop()
    assert link not in _links() and link not in _chains()


def _addresses(*prefix: str) -> list[dict[str, Any]]:
    shown = subprocess.run(
        [*prefix, "ip", "-4", "-j", "addr", "show"], capture_output=True, text=True, check=True
    )
    return list(json.loads(shown.stdout or "[]"))


def _host_end(namespace: Path) -> str:
    """The host's end of a tenant namespace's link: the other address of its /30."""
    inside = _addresses("nsenter", f"--net={namespace}")
    (eth0,) = [i for i in inside if i["ifname"] == "eth0"]
    tenant = ipaddress.IPv4Address(eth0["addr_info"][0]["local"])
    for interface in _addresses():
        for address in interface.get("addr_info", []):
            if ipaddress.IPv4Address(address["local"]) == tenant - 1:
                return str(interface["ifname"])
    raise AssertionError(f"no host end for {tenant}")


def test_a_dead_platforms_rules_are_swept_when_a_link_is_made(tmp_path: Path) -> None:
    stale = f"{egress.LINK_PREFIX}dead{os.getpid() % 10**7:07d}"
    table = egress.TABLE
    planted = "\n".join(
        [
            f"add table {table}",
            f"add map {table} links {{ type ifname : verdict ; }}",
            f"add chain {table} {stale}",
            f'add element {table} links {{ "{stale}" : jump {stale} }}',
        ]
    )
    subprocess.run(["nft", "-f", "-"], input=planted, text=True, check=True)
    bound = tmp_path / "ns"
    bound.touch()
    subprocess.run(["unshare", f"--net={bound}", "true"], check=True)
    links = egress.EgressLinks()
    try:
        link = links.apply(str(bound), None, "all")
        assert link is not None and link.name in _chains()
        assert stale not in _chains()
        links.remove(link)
        assert link.name not in _chains() and link.name not in _links()
    finally:
        subprocess.run(["umount", str(bound)], check=False)
