"""Interception on the whole path: what the rendered iptables rules and listeners do for a user's traffic.

Three services deployed once for the module, servers before their clients: ``back`` (app on 8080, alias
``back:80``), ``front`` (app bound to 0.0.0.0:80, alias ``front:80``, and a client of ``back``) and a
client-only ``client``. Each app answers JSON naming its pod and echoing the request headers it saw, so
a test can tell whether a request crossed a proxy (the proxy adds ``x-request-id`` and
``x-forwarded-proto``) or went straight to the app.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sc_operator.kube import Kube
from support.operator import OperatorProcess
from support.tasks import Harness, Network, Task, apply_accepted, connect_service, running, scratch_namespaces

pytestmark = pytest.mark.netns


@dataclass
class Deployed:
    harness: Harness
    back: Task
    front: Task
    client: Task


@pytest.fixture(scope="module")
def deployed(
    kube: Kube, wp_network: Network, wp_operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    workdir = tmp_path_factory.mktemp("interception")
    with (
        scratch_namespaces(kube) as (namespace, cns),
        running(kube, wp_network, namespace, workdir) as harness,
    ):
        apply_accepted(kube, connect_service("back", namespace, cns))
        [back] = harness.run_pods("back")
        harness.wait_dns("back", 1)
        apply_accepted(kube, connect_service("front", namespace, cns, container_port=80))
        [front] = harness.run_pods("front")
        harness.wait_dns("front", 1)
        apply_accepted(kube, connect_service("client", namespace, cns, serve=False))
        [client] = harness.run_pods("client")
        yield Deployed(harness, back, front, client)


def get(task: Task, url: str) -> dict[str, Any]:
    """GET from inside ``task``; the app's JSON answer plus the response's Server header."""
    result = task.curl(url, "-i")
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")  # text mode: curl's CRLFs arrive as \n
    assert head.startswith("HTTP/1.1 200"), result.stdout
    assert body, result.stdout
    doc: dict[str, Any] = json.loads(body)
    server = [
        line.split(":", 1)[1].strip() for line in head.splitlines() if line.lower().startswith("server:")
    ]
    doc["server"] = server[0] if server else ""
    return doc


def status_of(output: str) -> str:
    """The status code on the first line of ``curl -i`` output."""
    return output.splitlines()[0].split()[1] if output else ""


def via_proxy(answer: dict[str, Any]) -> bool:
    return "x-request-id" in answer["headers"] and answer["headers"].get("x-forwarded-proto") == "http"


def test_http10_is_refused_with_426(deployed: Deployed) -> None:
    egress_before = deployed.client.metrics()
    result = deployed.client.curl("http://front:80/", "-0", "-i")
    assert status_of(result.stdout) == "426", result.stdout
    # A caller using the task's address directly meets the ingress listener, which refuses it too.
    direct = deployed.client.curl(f"http://{deployed.front.address}:80/", "-0", "-i")
    assert status_of(direct.stdout) == "426", direct.stdout
    egress = deployed.client.metrics()
    label = '{TargetDiscoveryName="front"}'
    assert (
        egress["TargetHttp10RefusedCount" + label]
        == egress_before.get("TargetHttp10RefusedCount" + label, 0) + 1
    )
    assert deployed.front.metrics()['Http10RefusedCount{DiscoveryName="front"}'] >= 1


def test_app_bound_to_the_alias_port_still_reaches_another_endpoint_on_it(deployed: Deployed) -> None:
    front, back = deployed.front, deployed.back
    # front's app holds 0.0.0.0:80, and back's alias is port 80 too: the VIP still leads to back.
    answer = get(front, "http://back:80/")
    assert answer["name"] == back.pod
    assert via_proxy(answer)
    assert answer["server"] == "envoy"
    # Loopback to its own port reaches front's app directly, not through a proxy.
    own = get(front, "http://127.0.0.1:80/")
    assert own["name"] == front.pod
    assert not via_proxy(own)
    # And callers of front by name reach front's app through both proxies.
    called = get(deployed.client, "http://front:80/")
    assert called["name"] == front.pod
    assert via_proxy(called)
    assert front.metrics()['RequestCountPerTarget{TargetDiscoveryName="back"}'] >= 1


def test_caller_using_the_task_address_passes_through_its_proxy(deployed: Deployed) -> None:
    front, client = deployed.front, deployed.client
    ingress = 'RequestCount{DiscoveryName="front"}'
    before = front.metrics().get(ingress, 0)
    egress_before = client.metrics().get('RequestCountPerTarget{TargetDiscoveryName="front"}', 0)

    answer = get(client, f"http://{front.address}:80/")  # the containerPort, not the ingress port
    assert answer["name"] == front.pod
    assert via_proxy(answer)
    assert answer["server"] == "envoy"
    assert front.metrics()[ingress] == before + 1
    # The client's own proxy had no part in it: only namespace names (the VIP range) are intercepted.
    assert client.metrics().get('RequestCountPerTarget{TargetDiscoveryName="front"}', 0) == egress_before
