"""The gateway's proxy configuration (the ``gateway`` network shape between clusters): pure.

A cluster's gateway admits connections from peer clusters only to the Ready tasks of the endpoints
registered *here* in ConnectNamespaces that have peers, on the port their clients dial. It finds them
the way a client proxy does, through the owners' headless Services (A records: Ready pods only; SRV:
the port), so a task that turns NotReady leaves the allow list with the DNS record, and the gateway
never needs the API server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sc_operator.api.common import Endpoint
from sc_operator.render.proxy_config import endpoint_discovery
from sc_operator.settings import OperatorSettings

#: The gateway's listening port (the chart's ``gateway.port``; peers' ``spec.peers[].gateway.port``).
GATEWAY_PORT = 15443


def gateway_allow(
    linked: Iterable[tuple[str, Sequence[Endpoint]]], settings: OperatorSettings
) -> list[dict[str, Any]]:
    """One ``dns`` discovery per local endpoint of each linked ConnectNamespace (``(name, endpoints)``),
    deduplicated and sorted so the rendering is stable. Mirrored endpoints are never exposed: a gateway
    forwards into its own cluster only."""
    seen: dict[str, dict[str, Any]] = {}
    for cns, endpoints in linked:
        for ep in endpoints:
            if not ep.local:
                continue
            dns = endpoint_discovery(ep, cns, settings.cluster_domain, settings.dns_resolver)
            seen.setdefault(dns["srvName"], {"dns": dns})
    return [seen[k] for k in sorted(seen)]


def gateway_config_document(
    linked: Iterable[tuple[str, Sequence[Endpoint]]],
    settings: OperatorSettings,
    port: int = GATEWAY_PORT,
    version: str = "gateway",
) -> dict[str, Any] | None:
    """The gateway's ``sc-proxy`` configuration, or None while nothing is exposed (the proxy refuses an
    empty allow list: a gateway that may route nowhere is a mistake, not a state)."""
    allow = gateway_allow(linked, settings)
    if not allow:
        return None
    return {
        "version": version,
        "service": {"name": "sc-gateway", "cluster": settings.cluster_name},
        "admin": {"port": settings.admin_port, "localPort": settings.admin_local_port},
        "gateway": {"address": "0.0.0.0", "port": port, "allow": allow},
    }
