"""Client-alias addresses (VIPs) in 127.255.0.0/16 and the pod's ``hostAliases``.

ECS gives each endpoint name its own loopback address in 127.255.0.0/16, numbered from .1, and writes it to
the task's ``/etc/hosts`` (reference §2.1). We number the pinned dnsNames in sorted order, so the same pinned
list always yields the same addresses (a re-render never changes the pod template) and several ports of one
dnsName share one address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

VIP_NETWORK = ipaddress.IPv4Network("127.255.0.0/16")
# .0.0 is the network address and .255.255 the broadcast-looking one; both are skipped.
MAX_VIPS = VIP_NETWORK.num_addresses - 2


class TooManyAliasesError(Exception):
    """More distinct dnsNames than 127.255.0.0/16 has addresses."""


def assign_vips(aliases: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """(dnsName, port) → address: the n-th dnsName in sorted order gets 127.255.0.0 + n (from 1)."""
    pairs = sorted(set(aliases))
    names = sorted({name for name, _ in pairs})
    if len(names) > MAX_VIPS:
        raise TooManyAliasesError(
            f"{len(names)} client alias names exceed the {MAX_VIPS} addresses of {VIP_NETWORK}"
        )
    by_name = {name: str(VIP_NETWORK.network_address + i + 1) for i, name in enumerate(names)}
    return {(name, port): by_name[name] for name, port in pairs}


def host_aliases(vips: dict[tuple[str, int], str]) -> list[dict[str, Any]]:
    """The pod's ``hostAliases``: one entry per address, in address order."""
    by_ip: dict[str, set[str]] = {}
    for (name, _port), ip in vips.items():
        by_ip.setdefault(ip, set()).add(name)
    # Numeric order without building an IPv4Address per entry (a pod pins every endpoint of the namespace).
    ordered = sorted(by_ip, key=lambda ip: tuple(int(part) for part in ip.split(".")))
    return [{"ip": ip, "hostnames": sorted(by_ip[ip])} for ip in ordered]
