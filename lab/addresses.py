"""Where the lab's data plane really listens: every address on 127.0.0.0/8.

The provider and the SDK must see the addresses Scaleway would give (private ones from
the configured CIDR, public ones for load balancers), but no packet may leave this
machine or go to a private range. Each address the lab hands out is therefore mapped
to one loopback address, and every process of the data plane (HAProxy, stand-in apps,
the cluster's pods) binds to that loopback address instead.

Private IPv4 a.b.c.d (10/8, 172.16/12, 192.168/16) → 127.(100 + b % 100).c.d: the
environments' CIDRs (10.0.0.0/24, 10.1.0.0/24, 10.2.0.0/24) stay apart, and nothing
lands on 127.0.0.0/16, where the lab's own API and tools listen. Load balancer public
addresses are handed out by the lab from LB_PUBLIC_V4 (already loopback): what the
cutover's probes and the rehearsal's traffic reach is therefore the LB's own address.
"""

from __future__ import annotations

import ipaddress

LB_PUBLIC_V4 = ipaddress.ip_network("127.203.113.0/24")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


class NotLoopbackable(ValueError):
    pass


def loopback_for(address: str) -> str:
    """The loopback address standing for `address` (a private or lab-public IPv4)."""
    ip = ipaddress.ip_address(str(address).split("/")[0])
    if ip.version != 4:
        raise NotLoopbackable(f"{address}: the lab's data plane serves IPv4 only")
    if ip in LOOPBACK:
        return str(ip)
    if not any(ip in network for network in PRIVATE):
        raise NotLoopbackable(f"{address} is neither private nor loopback: the lab never sends a packet there")
    _, b, c, d = ip.packed
    return f"127.{100 + b % 100}.{c}.{d}"


def require_loopback(address: str) -> str:
    """`address` itself, if it is on 127.0.0.0/8 (or ::1); raises otherwise. Every load
    and probe of the lab goes through this check."""
    ip = ipaddress.ip_address(str(address).strip("[]"))
    if ip not in LOOPBACK and str(ip) != "::1":
        raise NotLoopbackable(f"{address} is not a loopback address: lab traffic stays on 127.0.0.0/8")
    return str(ip)
