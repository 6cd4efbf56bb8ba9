"""The endpoints a ConnectService registers, with the defaults applied (pure).

Defaults, and why:

- ``discoveryName`` defaults to ``portName`` (as in ECS).
- ``dnsName`` defaults to ``discoveryName``. ECS defaults it to ``discoveryName.namespace``; we choose the
  short name because Kubernetes users address services by short names and the seed tutorial reaches its
  server as ``http://nginx:80/``. Set ``dnsName`` explicitly to get the ECS form.
- ``appProtocol`` comes from the portMapping that ``portName`` names; unset means TCP.
- the entry's ``timeout`` travels with the endpoint: clients' proxies enforce it too, as ECS's do.
- ``tls``: set when the entry has a ``tls`` block, so clients that pin the endpoint originate TLS to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sc_operator.api.common import Endpoint, ServiceRef
from sc_operator.api.service import ConnectServiceSpec, ServiceConnectService
from sc_operator.api.taskdef import ContainerDefinition, PortMapping

SCC = "spec.serviceConnectConfiguration"


@dataclass(frozen=True)
class LocatedEndpoint:
    """An effective endpoint and the spec path of the services[] entry it comes from."""

    endpoint: Endpoint
    path: str
    """e.g. spec.serviceConnectConfiguration.services[0]"""


def port_mappings(spec: ConnectServiceSpec) -> dict[str, tuple[ContainerDefinition, PortMapping]]:
    """Named port mappings of the task definition (first wins if a name repeats; validation reports it)."""
    found: dict[str, tuple[ContainerDefinition, PortMapping]] = {}
    for container in spec.task_definition.container_definitions:
        for mapping in container.port_mappings or []:
            if mapping.name is not None and mapping.name not in found:
                found[mapping.name] = (container, mapping)
    return found


def discovery_name(service: ServiceConnectService) -> str:
    """The discoveryName, defaulting to the portName."""
    return service.discovery_name or service.port_name


def served(spec: ConnectServiceSpec) -> list[ServiceConnectService]:
    """The services[] entries, or none when Service Connect is off."""
    config = spec.service_connect_configuration
    if config is None or not config.enabled:
        return []
    return list(config.services or [])


def located_endpoints(spec: ConnectServiceSpec, owner: ServiceRef) -> list[LocatedEndpoint]:
    """Every endpoint of ``spec`` with the path of the entry that declares it."""
    mappings = port_mappings(spec)
    result: list[LocatedEndpoint] = []
    for index, service in enumerate(served(spec)):
        name = discovery_name(service)
        found = mappings.get(service.port_name)
        protocol = found[1].app_protocol if found else None
        timeout = service.timeout
        for alias in service.client_aliases or []:
            endpoint = Endpoint(
                discovery_name=name,
                port_name=service.port_name,
                dns_name=alias.dns_name or name,
                port=alias.port,
                app_protocol=protocol,
                service=owner,
                per_request_timeout_seconds=timeout.per_request_timeout_seconds if timeout else None,
                idle_timeout_seconds=timeout.idle_timeout_seconds if timeout else None,
                tls=True if service.tls is not None else None,
            )
            result.append(LocatedEndpoint(endpoint, f"{SCC}.services[{index}]"))
    return result


def effective_endpoints(spec: ConnectServiceSpec, owner: ServiceRef) -> list[Endpoint]:
    """The endpoints ``owner`` registers in its ConnectNamespace, defaults applied, in spec order."""
    return [located.endpoint for located in located_endpoints(spec, owner)]
