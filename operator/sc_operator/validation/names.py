"""Every name a client may use means one endpoint of the namespace (pure; the rule is implemented here once).

Clients reach an endpoint by its portName, its discoveryName or its dnsName, each on the alias port (seed,
"components"; :mod:`sc_operator.render.vips` puts all three on the endpoint's address). The discoveryName
and the dnsName are the endpoint's own names, so between two endpoints with different discoveryNames:

- a discoveryName may not be the other's dnsName (rule ``client-name-collision``: the name would mean two
  endpoints, and which one a client reached would depend on who registered first);
- two dnsNames may be equal, on different ports (rule ``client-alias-duplicate`` covers the pair);
- two discoveryNames may not be equal (rule ``discovery-name-duplicate``, checked by the callers).

A portName is never refused: it names a port of a task definition, and ECS lets several services share a
task definition (each with its own discoveryName; only one may leave it unset), so two endpoints having the
same portName, or a portName that is another endpoint's discoveryName, is normal. A portName therefore
resolves only while no other endpoint of the pinned list uses that name in any role
(:mod:`sc_operator.render.vips`); the docs say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sc_operator.api.common import Endpoint

RULE = "client-name-collision"

#: The kinds of an endpoint's own names, as the API spells the fields.
DISCOVERY, DNS = "discoveryName", "dnsName"


def own_names(ep: Endpoint) -> list[tuple[str, str]]:
    """(kind, name) of the names that identify ``ep`` (its portName may be shared, see above)."""
    return [(DISCOVERY, ep.discovery_name), (DNS, ep.dns_name)]


@dataclass(frozen=True)
class NameCollision:
    """``endpoint``'s ``kind`` is ``name``, which is ``held``'s ``held_kind``."""

    endpoint: Endpoint
    kind: str
    name: str
    held: Endpoint
    held_kind: str

    def message(self, namespace: str = "") -> str:
        where = f" in {namespace!r}" if namespace else ""
        return (
            f"every name a client may use must mean one endpoint{where}: {self.kind} {self.name!r} of "
            f"ConnectService {self.endpoint.owner()} (endpoint {self.endpoint.discovery_name!r}) is the "
            f"{self.held_kind} of endpoint {self.held.discovery_name!r} of ConnectService "
            f"{self.held.owner()}; rename one (set discoveryName, or clientAliases[0].dnsName)"
        )


def name_collisions(endpoints: Iterable[Endpoint], held: Iterable[Endpoint]) -> list[NameCollision]:
    """Each collision of a name of ``endpoints`` with a name of a ``held`` endpoint of another discoveryName,
    at most one per (endpoint, kind), in input order."""
    index: dict[str, list[tuple[str, Endpoint]]] = {}
    for other in held:
        for kind, name in own_names(other):
            index.setdefault(name, []).append((kind, other))
    found: list[NameCollision] = []
    for ep in endpoints:
        for kind, name in own_names(ep):
            for held_kind, other in index.get(name, []):
                if other.discovery_name == ep.discovery_name:
                    continue
                if kind != held_kind:  # discoveryName vs dnsName; equal kinds have their own rules
                    found.append(NameCollision(ep, kind, name, other, held_kind))
                    break
    return found
