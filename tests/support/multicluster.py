"""Two envtest "clusters" with their own pod networks (``support.tasks.Network``) and operators, for the
multi-cluster whole-path tests (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sc_operator import API_VERSION
from sc_operator.kube import CONNECT_NAMESPACES, NAMESPACES, PODS, Kube, Resource
from support.crds import crd_documents, wait_established
from support.envtest import EnvTest, Unavailable
from support.gate import unavailable
from support.operator import OperatorProcess, wait_for
from support.tasks import Network, missing_prerequisites

CNS = "mesh"
NS = "shop"
LINKS = "serviceconnect-system"
NODES = Resource("", "v1", "nodes", namespaced=False)
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices")


@dataclass
class Cluster:
    name: str
    env: EnvTest
    kube: Kube
    network: Network
    operator: OperatorProcess


def start_cluster(name: str, subnet: str, assets: Path, tmp: Path) -> Cluster:
    network = Network(tmp / f"net-{name}", subnet=subnet)
    env = EnvTest(assets, tmp / f"envtest-{name}")
    try:
        api = env.start()
        env.start_controller_manager()
    except Unavailable as exc:
        env.stop()
        network.close()
        unavailable(str(exc))
    client = api.api_client()
    from kubernetes import client as k8s

    docs = crd_documents()
    for doc in docs:
        k8s.ApiextensionsV1Api(client).create_custom_resource_definition(doc)
    wait_established(client, [d["metadata"]["name"] for d in docs])
    kube = Kube(client)
    for ns in (NS, LINKS):
        kube.create(NAMESPACES, {"metadata": {"name": ns}})
    kube.create(NODES, {"metadata": {"name": f"node-{name}"}})
    kube.create(
        CONNECT_NAMESPACES, {"apiVersion": API_VERSION, "kind": "ConnectNamespace", "metadata": {"name": CNS}}
    )
    (tmp / f"operator-{name}").mkdir()
    op = OperatorProcess(
        api,
        tmp / f"operator-{name}",
        env={
            "SC_CLUSTER_NAME": name,
            "SC_DNS_RESOLVER": network.resolver,
            "SERVICECONNECT_PEER_SYNC_SECONDS": "1",
        },
    )
    op.start()
    return Cluster(name, env, kube, network, op)


def stop_cluster(c: Cluster) -> None:
    c.operator.stop()
    c.env.stop()
    c.network.close()


def two_clusters(assets: Path, tmp: Path, routed: bool) -> Iterator[tuple[Cluster, Cluster]]:
    """Clusters ``a`` (198.18/16) and ``b`` (198.19/16), their pod networks routed to each other or not,
    stopped when the generator closes (for module fixtures)."""
    reason = missing_prerequisites()
    if reason:
        unavailable(f"whole-path tests: {reason}")
    a = start_cluster("a", "198.18", assets, tmp)
    try:
        b = start_cluster("b", "198.19", assets, tmp)
    except BaseException:
        stop_cluster(a)
        raise
    try:
        if routed:
            a.network.route_to(b.network)
        yield a, b
    finally:
        stop_cluster(b)
        stop_cluster(a)


def bind_pods(c: Cluster, service: str, count: int) -> None:
    """The scheduler's part: bind the service's pods to the cluster's Node (A's endpointslice controller
    lists only pods on a known node)."""

    def pods() -> list[dict[str, Any]] | None:
        found = c.kube.list(PODS, NS, {"serviceconnect.dev/service": service})
        return found if len(found) >= count else None

    for pod in wait_for(f"{count} pods of {service}", pods):
        meta, spec = pod["metadata"], pod["spec"]
        if not spec.get("nodeName"):
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": meta["name"]},
                "target": {"kind": "Node", "name": f"node-{c.name}"},
            }
            c.kube.request("POST", PODS.path(NS, str(meta["name"]), "binding"), binding)
