"""The seed tutorial on real sockets: the client task calls ``http://nginx:80/`` and gets nginx's page.

examples/10-nginx.yaml and examples/20-client.yaml go to the API server; the real operator renders them;
the harness (``support.tasks``) runs the pods it rendered in network namespaces. The name ``nginx`` is
known only to the client's hosts file (from hostAliases); the client proxy finds the nginx task through
DNS of the headless Service (filled from the real endpoints controller once the pod is Ready); nginx sees
the server proxy, not the client.

The proxy runs in the form the API server's version gets (a native sidecar from 1.29, else the first
container behind its postStart start-up gate); hack/test.sh runs this against the current Kubernetes and
again against the oldest supported one, 1.20 (`oldest_k8s`), so both start-up paths carry real traffic.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sc_operator.kube import CONNECT_SERVICES, PODS, Kube
from support.envtest import KubeAPI
from support.operator import accepted, wait_for
from support.tasks import Harness
from support.wholepath_apps import NGINX, example

pytestmark = [pytest.mark.netns, pytest.mark.oldest_k8s]


def deploy(kube: Kube, namespace: str, body: dict[str, Any]) -> None:
    kube.create(CONNECT_SERVICES, body, namespace)
    name = body["metadata"]["name"]
    cond = wait_for(f"{name} Accepted", lambda: accepted(kube, namespace, name), timeout=60)
    assert cond["status"] == "True", cond


def headers(raw: str) -> dict[str, str]:
    head = raw.split("\n\n", 1)[0]  # text mode: curl's CRLFs arrive as \n
    return {
        k.lower(): v.strip() for k, v in (line.split(":", 1) for line in head.splitlines()[1:] if ":" in line)
    }


def access_log(output: str) -> list[dict[str, Any]]:
    """The JSON access-log records after the first one (the first request), once there is one."""
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return records[1:] if len(records) >= 2 else []


def test_client_gets_the_nginx_page_through_both_proxies(
    kube: Kube, kube_api: KubeAPI, harness: Harness, namespace: str, connect_namespace: str
) -> None:
    # Servers first, then clients (the documented order): the client's rollout pins nginx.
    deploy(kube, namespace, example("10-nginx.yaml", namespace, connect_namespace))
    [server] = harness.run_pods(NGINX)
    assert harness.wait_dns("nginx", 1) == [server.address]
    deploy(kube, namespace, example("20-client.yaml", namespace, connect_namespace))
    [client] = harness.run_pods("client")
    for task in (server, client):
        spec = kube.get(PODS, task.pod, namespace)["spec"]
        sidecars = [c["name"] for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        gated = [c["name"] for c in spec["containers"][:1] if (c.get("lifecycle") or {}).get("postStart")]
        if kube_api.version >= (1, 29):
            assert (sidecars, gated) == (["sc-proxy"], []), spec
        else:
            assert (sidecars, gated) == ([], ["sc-proxy"]), spec

    # Only the client's hosts file knows the name.
    assert client.run("getent", "hosts", "nginx").stdout.split() == ["127.255.0.1", "nginx"]

    result = client.curl("http://nginx:80/", "-i")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/1.1 200"), result.stdout
    assert "<h1>Welcome to nginx!</h1>" in result.stdout
    h = headers(result.stdout)
    assert h["x-served-by"] == server.pod  # the nginx of the server task answered
    assert h["server"] == "envoy"  # the app's Server header replaced, as Service Connect does
    assert re.fullmatch(r"\d+", h["x-envoy-upstream-service-time"])

    # Both proxies counted it under the endpoint's name: egress by target, ingress by discovery name.
    egress = client.metrics()
    assert egress['RequestCountPerTarget{TargetDiscoveryName="nginx"}'] == 1
    assert egress['HTTPCode_Target_2XX_Count{TargetDiscoveryName="nginx"}'] == 1
    ingress = server.metrics()
    assert ingress['RequestCount{DiscoveryName="nginx"}'] == 1
    assert ingress['HTTPCode_2XX_Count{DiscoveryName="nginx"}'] == 1

    # The example asks for JSON access logs without query strings: the server proxy's stdout has the line.
    assert client.curl("http://nginx:80/?token=secret").returncode == 0
    lines = wait_for("the access log line", lambda: access_log(server.log("sc-proxy")), timeout=30)
    assert [(r["direction"], r["name"], r["method"], r["path"], r["status"]) for r in lines] == [
        ("ingress", "nginx", "GET", "/", 200)
    ]
    assert "secret" not in server.log("sc-proxy")

    # Other traffic goes direct: a name outside the namespace is not the proxy's business.
    assert client.curl("http://127.0.0.1:1/").returncode != 0
    assert client.metrics().get("EgressUnknownDestinationCount", 0) == 0
