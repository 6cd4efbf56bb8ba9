"""Metrics as a Prometheus server sees them: the operator renders the seed tutorial with a cluster name,
the harness runs its pods, and /metrics is scraped from outside the pods at the address, port and path
the pods' prometheus.io annotations give. Each sample names the service and the cluster; on egress the
ServiceName is the calling service (reference §8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sc_operator.kube import CONNECT_SERVICES, PODS, Kube
from support.envtest import KubeAPI
from support.operator import OperatorProcess, accepted, running_operator, wait_for
from support.proxy import parse_metrics
from support.tasks import Harness, Network, Task, http_get, in_netns

pytestmark = pytest.mark.netns

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
NGINX = "service-connect-nginx-service"
CLUSTER = "wholepath-eu"


@pytest.fixture(scope="module")
def wp_operator(
    kube_api: KubeAPI,
    controller_manager: Any,
    crds_installed: list[str],
    wp_network: Network,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    yield from running_operator(
        kube_api,
        tmp_path_factory.mktemp("operator"),
        SC_DNS_RESOLVER=wp_network.resolver,
        SC_CLUSTER_NAME=CLUSTER,
    )


def deploy(kube: Kube, namespace: str, connect_ns: str, example: str) -> None:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / example).read_text())
    body["metadata"]["namespace"] = namespace
    body["spec"]["serviceConnectConfiguration"]["namespace"] = connect_ns
    kube.create(CONNECT_SERVICES, body, namespace)
    name = body["metadata"]["name"]
    cond = wait_for(f"{name} Accepted", lambda: accepted(kube, namespace, name), timeout=60)
    assert cond["status"] == "True", cond


def scrape(kube: Kube, harness: Harness, namespace: str, task: Task) -> dict[str, float]:
    """GET the pod's annotated metrics endpoint from the hub, as Prometheus does from its own pod."""
    annotations = kube.get(PODS, task.pod, namespace)["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    port, path = int(annotations["prometheus.io/port"]), annotations["prometheus.io/path"]
    status, body = in_netns(harness.network.hub, lambda: http_get(task.address, port, path))
    assert status == 200, body
    return parse_metrics(body, constant_labels=True)


def test_scraped_metrics_name_the_calling_service_and_the_cluster(
    kube: Kube, harness: Harness, namespace: str, connect_namespace: str
) -> None:
    deploy(kube, namespace, connect_namespace, "10-nginx.yaml")
    [server] = harness.run_pods(NGINX)
    harness.wait_dns("nginx", 1)
    deploy(kube, namespace, connect_namespace, "20-client.yaml")
    [client] = harness.run_pods("client")
    result = client.curl("http://nginx:80/")
    assert result.returncode == 0, result.stderr

    def counted(task: Task, key: str) -> dict[str, float] | None:
        # The proxies count a request once its response is done: wait for that, not a fixed time.
        metrics = scrape(kube, harness, namespace, task)
        return metrics if metrics.get(key) else None

    caller = f'ServiceName="client",ClusterName="{CLUSTER}",TargetDiscoveryName="nginx"'
    egress = wait_for("the client's egress", lambda: counted(client, f"RequestCountPerTarget{{{caller}}}"))
    assert egress[f"RequestCountPerTarget{{{caller}}}"] == 1
    assert egress[f"HTTPCode_Target_2XX_Count{{{caller}}}"] == 1
    assert egress[f"TargetResponseTime_count{{{caller}}}"] == 1
    served = f'ServiceName="{NGINX}",ClusterName="{CLUSTER}",DiscoveryName="nginx"'
    ingress = wait_for("the server's ingress", lambda: counted(server, f"RequestCount{{{served}}}"))
    assert ingress[f"RequestCount{{{served}}}"] == 1
    assert ingress[f"HTTPCode_2XX_Count{{{served}}}"] == 1
