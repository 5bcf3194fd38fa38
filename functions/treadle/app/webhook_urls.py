"""Which URLs a webhook may call (`docs/security.md`, "Webhooks").

Deliveries are requests the platform makes on a tenant's behalf, from inside the
platform's network: a URL must not turn them against it (SSRF). Checked when a webhook
is created (scheme, form, literal addresses) and again before every attempt, on every
address the host name resolves to then (a name may point elsewhere later):

- never: link-local addresses (169.254.0.0/16, fe80::/10), which hold the EC2/ECS
  metadata and credential endpoints (169.254.169.254, 169.254.170.2), AWS's IPv6
  metadata address fd00:ec2::254, unspecified, multicast and reserved addresses;
- loopback and private networks (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) only
  where the operator allows them (`webhook_allow_private`: on by default for the
  embedded platform on one's own machine, off on AWS).

Redirects are not followed (a public URL could redirect to the metadata address).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from treadle.domain.errors import InvalidParameter

MAX_URL_LENGTH = 2048
_AWS_IMDS_V6 = ipaddress.ip_address("fd00:ec2::254")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedUrl(InvalidParameter):
    """A webhook URL the policy refuses."""


def address_allowed(ip: Address, *, allow_private: bool) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return address_allowed(ip.ipv4_mapped, allow_private=allow_private)
    if (
        ip.is_link_local
        or ip == _AWS_IMDS_V6
        or ip.is_unspecified
        or ip.is_multicast
        or ip.is_reserved
    ):
        return False
    private = ip.is_loopback or ip.is_private or (ip.version == 4 and ip in _CGNAT)
    return allow_private or not private


def check_url(url: str, *, allow_private: bool) -> tuple[str, int]:
    """The URL's (host, port) if its form is allowed; RefusedUrl says why not."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedUrl(f"A webhook URL is at most {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RefusedUrl(f"Invalid webhook URL {url[:100]!r}.") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("A webhook URL must be http:// or https://.")
    host = parts.hostname
    if not host:
        raise RefusedUrl("A webhook URL needs a host.")
    if parts.username or parts.password:
        raise RefusedUrl("A webhook URL may not carry credentials; verify the signature.")
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not address_allowed(literal, allow_private=allow_private):
        raise RefusedUrl(f"Webhooks may not call {host}: {_WHY}")
    return host, port or (443 if parts.scheme == "https" else 80)


def check_resolved(url: str, *, allow_private: bool) -> None:
    """Before an attempt: every address the host resolves to now must be allowed."""
    host, port = check_url(url, allow_private=allow_private)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise RefusedUrl(f"Cannot resolve {host}: {exc}.") from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address_allowed(ip, allow_private=allow_private):
            raise RefusedUrl(f"{host} resolves to {ip}: {_WHY}")


_WHY = (
    "link-local, metadata, loopback and private addresses are refused (docs/security.md, Webhooks)."
)
