"""Client-alias addresses (VIPs) in 127.255.0.0/16 and the pod's ``hostAliases``.

ECS gives each endpoint its own loopback address in 127.255.0.0/16, numbered from .1, and writes it to the
task's ``/etc/hosts`` (reference §2.1). The seed says the client's proxy receives connections "to the task
definition's port name, the service discovery name, or the client alias name and the alias port", so every
one of those names of an endpoint goes on its address, and the alias port is the port on all of them:
``nginx:80``, ``web-disc:80`` and ``web-port:80`` reach the same endpoint.

- Endpoints that share a dnsName (on different ports, which the namespace allows) share one address,
  because a hosts file maps a name to one address; their other names then share its ports too.
- A portName is a weak name: endpoints may share one (services sharing a task definition do), so a
  portName goes on the address only when no other endpoint uses that name in any role; otherwise it
  resolves to the endpoint that owns it as a discoveryName or dnsName, or to none. A discoveryName equal to
  another endpoint's dnsName is refused at registration (:mod:`sc_operator.validation.names`); in a pinned
  list from before that rule the two endpoints share one address.

Addresses are numbered by each group's smallest dnsName in sorted order, so the same pinned list always
yields the same addresses (a re-render never changes the pod template).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sc_operator.api.common import Endpoint
from sc_operator.render.inputs import RenderError, RenderInputs

VIP_NETWORK = ipaddress.IPv4Network("127.255.0.0/16")
# .0.0 is the network address and .255.255 the broadcast-looking one; both are skipped.
MAX_VIPS = VIP_NETWORK.num_addresses - 2


class TooManyAliasesError(Exception):
    """More endpoint addresses than 127.255.0.0/16 has."""


class AliasClashError(Exception):
    """Two endpoints on one address and port (only possible with a pinned list that breaks the rules)."""


@dataclass(frozen=True)
class VipPlan:
    """Where every pinned endpoint's names resolve."""

    #: discoveryName → address.
    addresses: dict[str, str]
    #: address → the names on it, sorted.
    hostnames: dict[str, tuple[str, ...]]
    #: (address, port) → discoveryName: what the proxy's ``aliases`` hold.
    ports: dict[tuple[str, int], str]
    #: portNames left unresolved because more than one endpoint claims the name.
    ambiguous: tuple[str, ...] = ()

    def host_aliases(self) -> list[dict[str, Any]]:
        """The pod's ``hostAliases``: one entry per address, in address order."""
        return [{"ip": ip, "hostnames": list(names)} for ip, names in self.hostnames.items()]


def _address(index: int) -> str:
    return str(VIP_NETWORK.network_address + index + 1)


def assign_vips(endpoints: Iterable[Endpoint]) -> VipPlan:
    """The address of every endpoint and the names on it (pure, deterministic)."""
    eps = sorted(set(endpoints), key=lambda e: (e.discovery_name, e.dns_name, e.port))
    # Union-find over discoveryNames: one group per set of endpoints joined by a shared strong name.
    parent: dict[str, str] = {ep.discovery_name: ep.discovery_name for ep in eps}

    def root(d: str) -> str:
        while parent[d] != d:
            parent[d] = parent[parent[d]]
            d = parent[d]
        return d

    strong: dict[str, str] = {}  # dnsName or discoveryName → a discoveryName claiming it
    for ep in eps:
        for name in (ep.discovery_name, ep.dns_name):
            other = strong.setdefault(name, ep.discovery_name)
            a, b = root(other), root(ep.discovery_name)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, set[str]] = {}  # root → names on the group's address
    for ep in eps:
        groups.setdefault(root(ep.discovery_name), set()).update((ep.discovery_name, ep.dns_name))
    # A portName resolves only when exactly one group claims it and it is nobody's strong name.
    claims: dict[str, set[str]] = {}
    for ep in eps:
        if ep.port_name:
            claims.setdefault(ep.port_name, set()).add(root(ep.discovery_name))
    ambiguous = []
    for port_name, owners in sorted(claims.items()):
        if len(owners) == 1 and port_name not in strong:
            groups[next(iter(owners))].add(port_name)
        elif port_name not in strong:
            ambiguous.append(port_name)
    if len(groups) > MAX_VIPS:
        raise TooManyAliasesError(f"{len(groups)} endpoint addresses exceed the {MAX_VIPS} of {VIP_NETWORK}")
    dns_names: dict[str, set[str]] = {}
    for ep in eps:
        dns_names.setdefault(root(ep.discovery_name), set()).add(ep.dns_name)
    order = sorted(groups, key=lambda r: (min(dns_names[r]), r))
    by_root = {r: _address(i) for i, r in enumerate(order)}
    ports: dict[tuple[str, int], str] = {}
    for ep in eps:
        key = (by_root[root(ep.discovery_name)], ep.port)
        held = ports.setdefault(key, ep.discovery_name)
        if held != ep.discovery_name:
            raise AliasClashError(
                f"endpoints {held!r} and {ep.discovery_name!r} share the names of address {key[0]} and both "
                f"use port {key[1]}"
            )
    return VipPlan(
        addresses={ep.discovery_name: by_root[root(ep.discovery_name)] for ep in eps},
        hostnames={by_root[r]: tuple(sorted(groups[r])) for r in order},
        ports=dict(sorted(ports.items(), key=lambda kv: (_numeric(kv[0][0]), kv[0][1]))),
        ambiguous=tuple(ambiguous),
    )


def vip_plan(inputs: RenderInputs) -> VipPlan:
    """The addresses and names of a rollout's pinned endpoints; a RenderError when they cannot be laid out."""
    try:
        return assign_vips(inputs.pinned)
    except (AliasClashError, TooManyAliasesError) as exc:
        raise RenderError(f"spec.endpoints: {exc}") from None


def _numeric(ip: str) -> tuple[int, ...]:
    # Numeric order without building an IPv4Address per entry (a pod pins every endpoint of the namespace).
    return tuple(int(part) for part in ip.split("."))
