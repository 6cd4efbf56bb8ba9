"""Cross-object rules: a service against the registries of the ConnectNamespaces (pure).

A registry is any object with ``endpoints`` (registered Endpoints with their owning service) and
``holders()`` (every member service, client-only ones included); ``sc_operator.registry.Registry`` is one.
Endpoints the service itself already holds never conflict, so re-validating a registered service is quiet.
Rule ``client-name-collision`` (:mod:`sc_operator.validation.names`) also compares the service's own
entries with each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.api.service import ConnectServiceSpec
from sc_operator.validation.endpoints import SCC, effective_endpoints, located_endpoints
from sc_operator.validation.names import DISCOVERY, DNS, RULE, name_collisions
from sc_operator.validation.violation import Violation


class RegistryView(Protocol):
    """What the rules read of a ConnectNamespace's registry."""

    @property
    def endpoints(self) -> Sequence[Endpoint]: ...

    def holders(self) -> list[ServiceRef]: ...


def validate_registration(
    spec: ConnectServiceSpec,
    owner: ServiceRef,
    namespace: str,
    registries: Mapping[str, RegistryView],
) -> list[Violation]:
    """Every violation of registering ``owner`` (with ``spec``) in ``namespace``.

    ``registries`` maps ConnectNamespace names to their registries; it should hold every namespace, so
    that "a service in two namespaces" can be seen.
    """
    violations: list[Violation] = []
    for other_name, other in sorted(registries.items()):
        if other_name == namespace:
            continue
        if owner in other.holders() or any(ep.local and ep.service == owner for ep in other.endpoints):
            violations.append(
                Violation(
                    "one-namespace",
                    f"{SCC}.namespace",
                    f"a service belongs to at most one namespace; {owner} is registered in ConnectNamespace "
                    f"{other_name!r} and cannot also join {namespace!r} until it leaves {other_name!r}",
                )
            )
    registry = registries.get(namespace)
    if registry is None:
        return violations + _name_violations(spec, owner, namespace, [])
    # Endpoints mirrored from linked clusters are others' even when their service has the same name.
    others = [ep for ep in registry.endpoints if not ep.local or ep.service != owner]
    by_discovery = {ep.discovery_name: ep for ep in others}
    by_alias = {(ep.dns_name, ep.port): ep for ep in others}
    for located in located_endpoints(spec, owner):
        endpoint = located.endpoint
        held = by_discovery.get(endpoint.discovery_name)
        if held is not None:
            violations.append(
                Violation(
                    "discovery-name-duplicate",
                    f"{located.path}.discoveryName",
                    f"discovery names must be unique within a namespace; {endpoint.discovery_name!r} is "
                    f"already registered in {namespace!r} by {held.owner()} (discoveryName defaults to "
                    f"the portName)",
                )
            )
        held = by_alias.get((endpoint.dns_name, endpoint.port))
        if held is not None:
            violations.append(
                Violation(
                    "client-alias-duplicate",
                    f"{located.path}.clientAliases[0]",
                    f"each (dnsName, port) must be unique within a namespace; {endpoint.dns_name}:"
                    f"{endpoint.port} is already registered in {namespace!r} by {held.owner()}",
                )
            )
    return violations + _name_violations(spec, owner, namespace, others)


_FIELD = {DISCOVERY: "discoveryName", DNS: "clientAliases[0].dnsName"}


def _name_violations(
    spec: ConnectServiceSpec, owner: ServiceRef, namespace: str, others: Sequence[Endpoint]
) -> list[Violation]:
    """Rule client-name-collision (:mod:`sc_operator.validation.names`) against the other services'
    endpoints and, within the service, against its earlier entries."""
    violations = []
    located = located_endpoints(spec, owner)
    for i, entry in enumerate(located):
        held = [*others, *(earlier.endpoint for earlier in located[:i])]
        for collision in name_collisions([entry.endpoint], held):
            violations.append(
                Violation(
                    RULE,
                    f"{entry.path}.{_FIELD.get(collision.kind, collision.kind)}",
                    collision.message(namespace),
                )
            )
    return violations


@dataclass(frozen=True)
class StaticRegistry:
    """A registry as plain data (for offline checks and tests): endpoints with owners, member services."""

    endpoints: tuple[Endpoint, ...] = ()
    members: tuple[ServiceRef, ...] = ()

    def holders(self) -> list[ServiceRef]:
        return list(self.members)

    def with_service(self, owner: ServiceRef, endpoints: Sequence[Endpoint]) -> StaticRegistry:
        """This registry after ``owner`` registered ``endpoints`` (replacing what it held)."""
        kept = tuple(ep for ep in self.endpoints if ep.service != owner)
        members = self.members if owner in self.members else (*self.members, owner)
        return StaticRegistry(endpoints=kept + tuple(endpoints), members=members)


def validate_together(
    services: Sequence[tuple[ServiceRef, str, ConnectServiceSpec]],
) -> dict[ServiceRef, list[Violation]]:
    """Cross-object rules over a set of services, as if registered in order into empty namespaces.

    ``services`` holds (owner, ConnectNamespace, spec). A later service is the one refused when two claim
    the same name, as the operator would refuse whichever came second. Used by ``scctl validate`` to
    check a directory of manifests without a cluster.
    """
    registries: dict[str, StaticRegistry] = {}
    found: dict[ServiceRef, list[Violation]] = {}
    for owner, namespace, spec in services:
        registries.setdefault(namespace, StaticRegistry())
        violations = validate_registration(spec, owner, namespace, registries)
        found[owner] = violations
        if not violations:
            registries[namespace] = registries[namespace].with_service(
                owner, effective_endpoints(spec, owner)
            )
    return found
