"""Every name resolves, and proxy-to-proxy traffic uses the containerPort, on real sockets.

Seed (tutorial, "components"): the client's proxy receives outbound connections "to the task definition's
port name, the service discovery name, or the client alias name and the alias port". Seed ("Networking"):
"the client service's proxy connects to the client-server service's proxy using the containerPort", and
``ingressPortOverride`` changes the port the proxy listens on.

The server ``web`` serves portMapping ``web-port`` (containerPort 8080) as discoveryName ``web-disc`` with
the client alias ``web.shop:8000``; a client-only service calls it by each of the three names. The operator
renders, the harness (``support.tasks``) runs the pods in network namespaces with the rendered iptables
rules, and the wire says which port the server task was addressed on: the counter of the server pod's
PREROUTING redirect for ``--dport 8080`` (a nat rule sees the first packet of each connection) against the
connections its ingress listener accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sc_operator.kube import NAMESPACES, Kube
from sc_operator.render.names import INTERCEPTION_LABEL
from support.operator import OperatorProcess
from support.tasks import (
    Harness,
    Network,
    Task,
    apply_accepted,
    connect_service,
    running,
    scratch_namespaces,
)

pytestmark = pytest.mark.netns

CONTAINER_PORT = 8080
#: Above 1024: in the listeners mode the unprivileged proxy binds the alias port itself, and these network
#: namespaces keep the kernel's default net.ipv4.ip_unprivileged_port_start (containerd sets 0 in pods).
ALIAS_PORT = 8000
NAMES = ("web-port", "web-disc", "web.shop")


@pytest.fixture
def scratch(
    kube: Kube, wp_network: Network, wp_operator: OperatorProcess, tmp_path: Path
) -> Iterator[tuple[Harness, str, str]]:
    with (
        scratch_namespaces(kube) as (namespace, cns),
        running(kube, wp_network, namespace, tmp_path) as harness,
    ):
        yield harness, namespace, cns


def web(namespace: str, cns: str, override: int | None = None) -> dict[str, Any]:
    body = connect_service("web", namespace, cns, discovery="web-disc", container_port=CONTAINER_PORT)
    [container] = body["spec"]["taskDefinition"]["containerDefinitions"]
    container["portMappings"][0]["name"] = "web-port"
    [entry] = body["spec"]["serviceConnectConfiguration"]["services"]
    entry["portName"] = "web-port"
    entry["clientAliases"] = [{"port": ALIAS_PORT, "dnsName": "web.shop"}]
    if override is not None:
        entry["ingressPortOverride"] = override
    return body


def deploy(kube: Kube, harness: Harness, namespace: str, cns: str, **kw: Any) -> tuple[Task, Task]:
    """The server first, then the client (the documented order: the client's rollout pins the server)."""
    apply_accepted(kube, web(namespace, cns, **kw))
    [server] = harness.run_pods("web")
    harness.wait_dns("web-disc", 1)
    apply_accepted(kube, connect_service("client", namespace, cns, serve=False))
    [client] = harness.run_pods("client")
    return server, client


def answered_by(task: Task, url: str) -> str:
    """GET ``url`` from inside ``task``; the pod name the app put in its JSON answer."""
    result = task.curl(url)
    assert result.returncode == 0, result.stderr
    name: str = json.loads(result.stdout)["name"]
    return name


def srv_ports(harness: Harness, client: Task) -> list[int]:
    """The ports the DNS SRV record the client's proxy resolves for web-disc gives (one per task)."""
    [endpoint] = [e for e in client.config["endpoints"] if e["name"] == "web-disc"]
    srv = endpoint["discovery"]["dns"]["srvName"]
    dns = harness.network.dns
    assert dns is not None
    with dns.lock:
        return [port for _, port in dns.srv.get(srv, [])]


def redirected_connections(task: Task, port: int) -> int:
    """Connections from outside the pod to ``port`` that the pod's PREROUTING rule handed to the proxy."""
    listing = task.run("iptables", "-t", "nat", "-L", "SC_INGRESS", "-v", "-n", "-x")
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines() if f"dpt:{port} " in line + " "]
    assert len(rows) == 1, listing.stdout
    return int(rows[0][0])


@pytest.mark.parametrize("mode", ["redirect", "listeners"])
def test_the_client_reaches_the_server_by_port_name_discovery_name_and_dns_name(
    kube: Kube, scratch: tuple[Harness, str, str], mode: str
) -> None:
    harness, namespace, cns = scratch
    if mode == "listeners":
        kube.patch(NAMESPACES, namespace, {"metadata": {"labels": {INTERCEPTION_LABEL: "listeners"}}})
    server, client = deploy(kube, harness, namespace, cns)
    assert client.config["egress"]["mode"] == mode

    # All three names are on one address in the client's hosts file...
    addresses = {client.run("getent", "hosts", name).stdout.split()[0] for name in NAMES}
    assert addresses == {"127.255.0.1"}
    # ...and each, on the alias port, reaches the server's app through both proxies.
    for name in NAMES:
        assert answered_by(client, f"http://{name}:{ALIAS_PORT}/") == server.pod
    assert server.metrics()['RequestCount{DiscoveryName="web-disc"}'] == len(NAMES)
    assert client.metrics()['RequestCountPerTarget{TargetDiscoveryName="web-disc"}'] == len(NAMES)


def test_proxy_to_proxy_connections_arrive_on_the_container_port(
    kube: Kube, scratch: tuple[Harness, str, str]
) -> None:
    harness, namespace, cns = scratch
    server, client = deploy(kube, harness, namespace, cns)
    # The client's proxy learns the containerPort from DNS, not a port of ours (15100 and up).
    assert srv_ports(harness, client) == [CONTAINER_PORT]
    [ingress] = server.config["ingress"]
    assert ingress["interceptPort"] == CONTAINER_PORT
    assert ingress["port"] != CONTAINER_PORT
    assert redirected_connections(server, CONTAINER_PORT) == 0

    for _ in range(3):
        assert answered_by(client, f"http://web.shop:{ALIAS_PORT}/") == server.pod
    # Every connection the server's ingress listener accepted was addressed to the containerPort: the
    # PREROUTING redirect for --dport 8080 counted exactly as many.
    accepted = server.metrics()['NewConnectionCount{DiscoveryName="web-disc"}']
    assert accepted >= 1
    assert redirected_connections(server, CONTAINER_PORT) == accepted


def test_with_ingress_port_override_the_client_proxy_dials_the_override(
    kube: Kube, scratch: tuple[Harness, str, str]
) -> None:
    harness, namespace, cns = scratch
    server, client = deploy(kube, harness, namespace, cns, override=9443)
    assert srv_ports(harness, client) == [9443]
    [ingress] = server.config["ingress"]
    assert (ingress["port"], ingress.get("interceptPort")) == (9443, None)

    assert answered_by(client, f"http://web.shop:{ALIAS_PORT}/") == server.pod
    # The proxy listens only on the override, and it carried the request.
    assert server.metrics()['RequestCount{DiscoveryName="web-disc"}'] == 1
    # Traffic to the containerPort is not intercepted: a caller of the task address reaches the app directly.
    direct = client.curl(f"http://{server.address}:{CONTAINER_PORT}/")
    assert direct.returncode == 0, direct.stderr
    assert server.metrics()['RequestCount{DiscoveryName="web-disc"}'] == 1
