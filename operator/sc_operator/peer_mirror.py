"""Mirrored discovery for linked clusters' endpoints (pure rendering).

Client proxies find the tasks behind an endpoint through a headless Service,
``<headless_service_name(discoveryName, ConnectNamespace)>.<owner's k8s namespace>.svc`` (A/AAAA for the
addresses, SRV for the port; :mod:`sc_operator.render.proxy_config`). For an endpoint of a linked
cluster this operator creates that same Service here, without a selector, and EndpointSlices listing the
peer's ready tasks, read from the peer's own EndpointSlices (its Ready pods). So cluster DNS answers for
remote tasks exactly as for local ones and neither the proxy nor its configuration changes: a client
cannot tell a mirrored endpoint from a local one. (The alternative, streaming addresses to each proxy,
would need a new discovery mode in every proxy and a connection from every proxy to the operator; the
mirror needs only what DNS discovery already uses, and keeps working while the operator restarts.)

Mirror objects are labelled with the peer cluster and the ConnectNamespace, owned by the
ConnectNamespace (so they go with it), and the slices by their Service. The Kubernetes namespace must
exist here (as Linkerd's service mirror, this operator does not create namespaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sc_operator import API_VERSION, GROUP
from sc_operator.api.common import Endpoint
from sc_operator.render.names import (
    DISCOVERY_ANNOTATION,
    DISCOVERY_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    headless_service_name,
    ingress_port_name,
    label_value,
)

#: On mirror objects: which linked cluster they come from, and for which ConnectNamespace.
PEER_CLUSTER_LABEL = f"{GROUP}/peer-cluster"
CONNECT_NAMESPACE_LABEL = f"{GROUP}/connect-namespace"
#: EndpointSlices with another managed-by are left alone by the endpointslice controller.
SLICE_MANAGER = f"peer-mirror.{GROUP}"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
SLICE_MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"


@dataclass(frozen=True, order=True)
class Backend:
    """One ready task of a peer endpoint: the address and the port its proxy accepts on."""

    address: str
    port: int


def mirror_labels(cluster: str, connect_namespace: str) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        PEER_CLUSTER_LABEL: label_value(cluster),
        CONNECT_NAMESPACE_LABEL: label_value(connect_namespace),
    }


def mirror_key(ep: Endpoint, connect_namespace: str) -> tuple[str, str]:
    """(Kubernetes namespace, Service name) of ``ep``'s headless Service, here and on its peer."""
    return ep.service.namespace, headless_service_name(ep.discovery_name, connect_namespace)


def render_mirror_service(
    ep: Endpoint, connect_namespace: str, namespace_uid: str, backends: Sequence[Backend]
) -> dict[str, Any]:
    """The selector-less headless Service standing for ``ep`` (a mirrored endpoint) here."""
    assert ep.cluster is not None, "only mirrored endpoints are mirrored"
    namespace, name = mirror_key(ep, connect_namespace)
    ports = sorted({b.port for b in backends})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": mirror_labels(ep.cluster, connect_namespace)
            | {DISCOVERY_LABEL: label_value(ep.discovery_name)},
            "annotations": {DISCOVERY_ANNOTATION: ep.discovery_name},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "ConnectNamespace",
                    "name": connect_namespace,
                    "uid": namespace_uid,
                }
            ],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            # Informational: DNS takes the port of each task from the EndpointSlices (SRV).
            "ports": [
                {
                    "name": ingress_port_name(ep.app_protocol or "tcp"),
                    "protocol": "TCP",
                    "port": ports[0] if ports else 1,
                }
            ],
        },
    }


def render_mirror_slices(
    ep: Endpoint, connect_namespace: str, service_uid: str, backends: Sequence[Backend]
) -> list[dict[str, Any]]:
    """EndpointSlices of the peer's ready tasks: one per (address family, port), owned by the Service."""
    assert ep.cluster is not None
    namespace, service = mirror_key(ep, connect_namespace)
    groups: dict[tuple[str, int], list[str]] = {}
    for b in sorted(set(backends)):
        family = "IPv6" if ":" in b.address else "IPv4"
        groups.setdefault((family, b.port), []).append(b.address)
    out = []
    for (family, port), addresses in sorted(groups.items()):
        out.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{service}-{family.lower()}-{port}",
                    "namespace": namespace,
                    "labels": mirror_labels(ep.cluster, connect_namespace)
                    | {SERVICE_NAME_LABEL: service, SLICE_MANAGED_BY_LABEL: SLICE_MANAGER},
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Service", "name": service, "uid": service_uid}
                    ],
                },
                "addressType": family,
                "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
                "ports": [
                    {"name": ingress_port_name(ep.app_protocol or "tcp"), "protocol": "TCP", "port": port}
                ],
            }
        )
    return out


def ready_backends(slices: Sequence[dict[str, Any]], app_protocol: str | None) -> list[Backend]:
    """The ready tasks in a peer's EndpointSlices of one headless Service (the port named
    ``sc-<proto>``; a missing ``ready`` means ready, as the EndpointSlice API says)."""
    wanted = ingress_port_name(app_protocol or "tcp")
    out: set[Backend] = set()
    for sl in slices:
        ports = sl.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") == wanted), None)
        if port is None and ports:
            port = ports[0].get("port")
        if not isinstance(port, int):
            continue
        for e in sl.get("endpoints") or []:
            if (e.get("conditions") or {}).get("ready") is False:
                continue
            for address in e.get("addresses") or []:
                out.add(Backend(str(address), port))
    return sorted(out)
