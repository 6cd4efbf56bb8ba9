"""Two clusters, one ConnectNamespace, on real sockets: a client task in cluster B calls
``http://nginx:80/`` served by tasks in cluster A, over a flat (routed) network.

Each cluster is an envtest API server with its kube-controller-manager and operator, and its own pod
network: a hub namespace with a bridge and a DNS server (``support.tasks.Network``), 198.18.0.0/16 for A
and 198.19.0.0/16 for B, the hubs routed to each other (peered VPCs). B is linked to A with ``scctl link``.
A's real endpointslice controller lists A's Ready pods (bound to a Node object); B's operator mirrors them
into a selector-less headless Service and EndpointSlices in B; B's DNS (the harness, as CoreDNS) answers
from those; B's client proxy dials A's tasks directly, proxy to proxy. Nothing of A is in B's DNS but what
B's operator mirrored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sc_operator import cli
from support.multicluster import CNS, LINKS, NS, Cluster, bind_pods, two_clusters
from support.operator import wait_for
from support.tasks import Harness, apply_accepted, connect_service

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def clusters(
    envtest_assets: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, Cluster]]:
    yield from two_clusters(envtest_assets, tmp_path_factory.mktemp("wp-multicluster"), routed=True)


def test_client_in_b_reaches_nginx_in_a_over_a_flat_network(
    clusters: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    a, b = clusters
    code = cli.main(
        ["link", CNS, "--peer-name", "a", "--peer-kubeconfig", str(a.env.api.kubeconfig if a.env.api else ""),
         "--cluster-name", "b", "--kubeconfig", str(b.env.api.kubeconfig if b.env.api else ""),
         "--secret-namespace", LINKS, "--peer-namespace", LINKS]
    )  # fmt: skip
    assert code == 0
    # A's harness writes no DNS (a huge interval): B's client can only find A's tasks through B's mirror.
    harness_a = Harness(a.kube, a.network, NS, tmp_path / "a", dns_interval=1e9)
    harness_b = Harness(b.kube, b.network, NS, tmp_path / "b")
    try:
        apply_accepted(
            a.kube, connect_service("nginx", NS, CNS, container_port=80, desired=2, image="nginx:1")
        )
        bind_pods(a, "nginx", 2)
        servers = harness_a.run_pods("nginx")
        assert {s.address.rsplit(".", 2)[0] for s in servers} == {"198.18"}
        wait_for(
            "A's two nginx tasks in B's DNS", lambda: len(harness_b.dns_addresses("nginx")) == 2, timeout=60
        )
        assert sorted(harness_b.dns_addresses("nginx")) == sorted(s.address for s in servers)

        apply_accepted(b.kube, connect_service("client", NS, CNS, serve=False))
        [client] = harness_b.run_pods("client")
        assert client.address.startswith("198.19.")

        result = client.curl("http://nginx:80/", "-i")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("HTTP/1.1 200"), result.stdout
        assert "Welcome to nginx!" in result.stdout
        served_by = [
            line.split(":", 1)[1].strip()
            for line in result.stdout.splitlines()
            if line.lower().startswith("x-served-by:")
        ]
        assert len(served_by) == 1
        assert served_by[0] in {s.pod for s in servers}
        egress = client.metrics()
        assert egress['RequestCountPerTarget{TargetDiscoveryName="nginx"}'] == 1
        ingress = sum(s.metrics().get('RequestCount{DiscoveryName="nginx"}', 0) for s in servers)
        assert ingress == 1

        # One of A's tasks crashes: the client fails over to the other one, every request answered.
        victim, survivor = servers
        harness_a.kill(victim, report=False)  # not even reported yet: the client's proxy must cope
        for _ in range(6):
            again = client.curl("http://nginx:80/", "-i")
            assert again.returncode == 0, again.stderr
            assert again.stdout.startswith("HTTP/1.1 200"), again.stdout
            assert f"x-served-by: {survivor.pod}" in again.stdout.lower()
        # Reported NotReady in A: B's mirror (and so B's DNS) drops it.
        harness_a.set_ready(victim, False)
        wait_for(
            "B's DNS down to A's survivor",
            lambda: harness_b.dns_addresses("nginx") == [survivor.address],
            timeout=60,
        )
    finally:
        harness_b.close()
        harness_a.close()
