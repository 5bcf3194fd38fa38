"""A tenant's egress policy, enforced by the host's kernel: a veth pair and nftables.

Policy `none` (the default) needs nothing: the tenant's namespace (`netns.py`) holds a
loopback device only, so no packet can leave it. For `all` or an allow-list the
namespace gets a link to the host, and the host's packet filter decides what crosses it:

- a veth pair: `eth0` in the tenant's namespace, `trd<11 hex digits>` in the platform's,
  on a /30 of the sandbox subnet (198.18.0.0/16 by default: the benchmarking range, not
  used on real networks); the host's end is the tenant's default route;
- one nftables table, `inet treadle_egress`, shared by every platform on the host. Its
  input and forward chains send each packet that arrives on a tenant link to that
  link's chain (a verdict map keyed by interface name), which accepts replies, then
  what the policy allows, and refuses the rest: a TCP reset or ICMP admin-prohibited,
  so that a refused connect fails at once instead of timing out. Nothing enters a
  tenant link that the tenant did not start, and what leaves the host is masqueraded.

`all` is everything but the host itself (any of its own addresses: its loopback and
admin ports stay out of reach), link-local addresses (169.254.169.254) and the sandbox
subnet (other tenants). An allow-list is exactly its entries (TCP and UDP to the port,
when one is given), plus DNS to the host's nameservers when an entry names a host;
names are resolved when the policy is applied (one that does not resolve opens nothing).

Tenant code cannot change any of this: the rules live in the platform's namespace and
its workers hold no capability (`confine.py`). Each change is one `nft -f` transaction,
applied whole or not at all; a link whose rules cannot be applied is removed, so a
failure leaves the tenant with less network, never more. Names and subnets are
host-wide, so links are made under a host-wide lock (`LOCK_PATH`), from what the
kernel shows: a link dies with its namespace, so a platform that died leaves no address
taken, and its chains are swept when the next link is made.

The work is done by iproute2's `ip` and nftables' `nft`, the tools made for it (a
netlink client by hand would re-implement both); `nsenter` (util-linux) runs `ip`
inside the tenant's namespace. Runs in the platform, never in a worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

log = logging.getLogger(__name__)

# "none" | "all" | ["host:port", "IP[:port]", "CIDR[:port]", "[IPv6]:port", ...]
# (validated by `treadle.tenancy.models.Egress` before it gets here).
Policy = str | Sequence[str]
Resolver = Callable[[str, int], list[str]]

DEFAULT_SUBNET = IPv4Network("198.18.0.0/16")
TABLE = "inet treadle_egress"
LINK_PREFIX = "trd"
LOCK_PATH = Path("/run/treadle-egress.lock")
TOOLS = ("ip", "nft", "nsenter")
_TIMEOUT_S = 10.0
_REFUSE = "goto refuse"


class EgressError(Exception):
    """The policy could not be applied (the tenant is left without a link)."""


@dataclass(frozen=True)
class Link:
    """A tenant namespace's way out: the host's end of its veth pair, and its /30."""

    name: str
    network: IPv4Network

    @property
    def host(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def tenant(self) -> str:
        return str(self.network.network_address + 2)


def missing_tools() -> list[str]:
    """The programs this module needs that the host does not have."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _split(rule: str) -> tuple[str, int | None]:
    """`host:port`, `IP[:port]`, `CIDR[:port]`, `[IPv6]:port` -> (address, port)."""
    if rule.startswith("["):
        address, _, rest = rule[1:].partition("]")
        return address, int(rest[1:]) if rest else None
    if rule.count(":") == 1:
        address, port = rule.split(":")
        return address, int(port)
    return rule, None


def resolve(host: str, port: int) -> list[str]:
    """The addresses a name has now (both families), for rules on IP addresses."""
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise EgressError(f"cannot resolve {host!r} of the egress policy: {exc}") from exc
    return sorted({str(info[4][0]) for info in found})


def nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The host's nameservers that a namespace can reach (not its loopback ones)."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        for line in resolv_conf.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    if not ipaddress.ip_address(words[1]).is_loopback:
                        found.append(words[1])
    return found


def _to(network: str, port: int | None) -> str:
    family = "ip6" if ipaddress.ip_network(network, strict=False).version == 6 else "ip"
    ports = "" if port is None else f" meta l4proto {{ tcp, udp }} th dport {port}"
    return f"{family} daddr {network}{ports} accept"


def policy_rules(
    policy: Policy,
    *,
    subnet: IPv4Network = DEFAULT_SUBNET,
    resolver: Resolver = resolve,
    dns: Callable[[], list[str]] = nameservers,
) -> list[str]:
    """The body of a link's chain after its replies are accepted: what `policy` allows,
    then the refusal of everything else."""
    if policy == "none":
        return [_REFUSE]
    if policy == "all":
        return [
            f"fib daddr type local {_REFUSE}",  # the host itself, on any of its addresses
            f"ip daddr {{ 169.254.0.0/16, {subnet} }} {_REFUSE}",
            f"ip6 daddr fe80::/10 {_REFUSE}",
            "accept",
        ]
    rules: list[str] = []
    names = False
    for rule in policy:
        address, port = _split(rule)
        try:
            ipaddress.ip_network(address, strict=True)
            rules.append(_to(address, port))
        except ValueError:
            names = True
            if port is None:  # the model refuses it: a name would open every port
                raise EgressError(f"egress rule {rule!r} names a host without a port") from None
            try:
                rules.extend(_to(found, port) for found in resolver(address, port))
            except EgressError as exc:
                # That destination only stays closed: the rest of the policy holds, and
                # the next application (a restart, a change) resolves it again.
                log.warning("sandbox egress: %s; the rule %r allows nothing for now", exc, rule)
    if names:
        rules.extend(_to(server, 53) for server in dns())
    return [*rules, _REFUSE]


def _table_script(subnet: IPv4Network) -> list[str]:
    """The shared table, (re)declared by every transaction: the same content each time."""
    t = TABLE
    return [
        f"add table {t}",
        f"add map {t} links {{ type ifname : verdict ; }}",
        f"add set {t} subnets {{ type ipv4_addr ; flags interval ; }}",
        f"add element {t} subnets {{ {subnet} }}",
        f"add chain {t} refuse",
        f"flush chain {t} refuse",
        f"add rule {t} refuse meta l4proto tcp reject with tcp reset",
        f"add rule {t} refuse reject with icmpx type admin-prohibited",
        f"add chain {t} input {{ type filter hook input priority -10 ; policy accept ; }}",
        f"flush chain {t} input",
        f"add rule {t} input iifname vmap @links",
        f'add rule {t} input iifname "{LINK_PREFIX}*" goto refuse',
        f"add chain {t} forward {{ type filter hook forward priority -10 ; policy accept ; }}",
        f"flush chain {t} forward",
        f"add rule {t} forward iifname vmap @links",
        f'add rule {t} forward iifname "{LINK_PREFIX}*" goto refuse',
        f'add rule {t} forward oifname "{LINK_PREFIX}*" ct state established,related accept',
        f'add rule {t} forward oifname "{LINK_PREFIX}*" drop',
        f"add chain {t} postrouting {{ type nat hook postrouting priority 100 ; policy accept ; }}",
        f"flush chain {t} postrouting",
        f'add rule {t} postrouting ip saddr @subnets oifname != "{LINK_PREFIX}*" masquerade',
    ]


def _chain_script(link: Link, rules: list[str], *, new: bool) -> list[str]:
    t, name = TABLE, link.name
    script = [
        f"add chain {t} {name}",
        f"flush chain {t} {name}",
        f"add rule {t} {name} ct state established,related accept",
        f"add rule {t} {name} ct state invalid drop",
        *(f"add rule {t} {name} {rule}" for rule in rules),
    ]
    if new:
        script.append(f'add element {t} links {{ "{name}" : jump {name} }}')
    return script


def _drop_script(name: str, *, element: bool = True) -> list[str]:
    drop = [f'delete element {TABLE} links {{ "{name}" }}'] if element else []
    return [*drop, f"delete chain {TABLE} {name}"]


def _run(args: Sequence[str], script: Sequence[str] = ()) -> str:
    try:
        done = subprocess.run(
            list(args),
            input="\n".join(script) + "\n" if script else None,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EgressError(f"{args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise EgressError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class EgressLinks:
    """Links and rules of one platform's tenant namespaces."""

    def __init__(self, subnet: IPv4Network = DEFAULT_SUBNET, resolver: Resolver = resolve) -> None:
        if subnet.prefixlen > 29:
            raise ValueError(f"sandbox subnet {subnet} is too small (at most /29)")
        self.subnet = subnet
        self._resolver = resolver
        self._forwarding = False

    def apply(self, namespace: str, link: Link | None, policy: Policy) -> Link | None:
        """Give the namespace bound at `namespace` this policy; returns its link (None
        for `none`). On failure the link is gone, and EgressError says why."""
        if policy == "none":
            if link is not None:
                self.remove(link)
            return None
        try:
            rules = policy_rules(policy, subnet=self.subnet, resolver=self._resolver)
            if link is None:
                return self._connect(namespace, rules)
            script = _table_script(self.subnet) + _chain_script(link, rules, new=False)
            _run(["nft", "-f", "-"], script)
            return link
        except EgressError:
            if link is not None:
                self.remove(link)  # fail closed: no link, no network
            raise

    def remove(self, link: Link) -> None:
        """Remove the link (both ends) and its chain; what is already gone is fine."""
        with contextlib.suppress(EgressError):
            _run(["ip", "link", "del", link.name])
        with contextlib.suppress(EgressError):
            _run(["nft", "-f", "-"], _drop_script(link.name))

    def _connect(self, namespace: str, rules: list[str]) -> Link:
        self._enable_forwarding()
        with _host_lock():
            link = Link(f"{LINK_PREFIX}{secrets.token_hex(6)[:11]}", self._free_network())
            _run(
                ["ip", "-batch", "-"],
                [
                    f"link add {link.name} type veth peer name eth0 netns {namespace}",
                    f"addr add {link.host}/30 dev {link.name}",
                    f"link set {link.name} up",
                ],
            )
            try:
                _run(
                    ["nsenter", f"--net={namespace}", "ip", "-batch", "-"],
                    [
                        f"addr add {link.tenant}/30 dev eth0",
                        "link set eth0 up",
                        f"route add default via {link.host}",
                    ],
                )
                sweep = [
                    line
                    for name, mapped in self._stale_chains()
                    for line in _drop_script(name, element=mapped)
                ]
                script = _table_script(self.subnet) + sweep
                _run(["nft", "-f", "-"], script + _chain_script(link, rules, new=True))
            except EgressError:
                self.remove(link)
                raise
        return link

    def _free_network(self) -> IPv4Network:
        """The first /30 of the subnet that no tenant link on this host holds."""
        shown = json.loads(_run(["ip", "-4", "-j", "addr", "show"]) or "[]")
        taken = {
            IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False)
            for interface in shown
            if str(interface.get("ifname", "")).startswith(LINK_PREFIX)
            for a in interface.get("addr_info", [])
        }
        for network in self.subnet.subnets(new_prefix=30):
            if not any(network.overlaps(t) for t in taken):
                return network
        raise EgressError(f"no free /30 left in the sandbox subnet {self.subnet}")

    def _stale_chains(self) -> list[tuple[str, bool]]:
        """Chains of links that are gone (their platform died): (name, in the map)."""
        try:
            listed = json.loads(_run(["nft", "-j", "list", "table", *TABLE.split()]))
        except EgressError:
            return []  # no table yet
        chains, mapped = set(), set()
        for entry in listed.get("nftables", []):
            chain = entry.get("chain", {}).get("name", "")
            if chain.startswith(LINK_PREFIX):
                chains.add(chain)
            for element in entry.get("map", {}).get("elem", []) if "map" in entry else []:
                if isinstance(element, list) and element and isinstance(element[0], str):
                    mapped.add(element[0])
        alive = set(os.listdir("/sys/class/net"))
        return [(name, name in mapped) for name in sorted(chains - alive)]

    def _enable_forwarding(self) -> None:
        # Needed for anything past the host itself; said once, as it changes the host.
        if self._forwarding:
            return
        path = Path("/proc/sys/net/ipv4/ip_forward")
        if path.read_text().strip() != "1":
            path.write_text("1\n")
            log.warning("sandbox: enabled IPv4 forwarding for tenants' egress policies")
        self._forwarding = True
