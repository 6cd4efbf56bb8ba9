"""The seed tutorial's nginx service and a client-only service, materialised by the running operator.

What a user would check with kubectl: both Accepted, the namespace registry lists nginx, the Deployments
carry the injected proxy in the form the API server's version calls for (a native sidecar from 1.29: the
init container after the interception one, with ``restartPolicy: Always`` and a startup probe; before
1.29 the first container, with a postStart start-up gate), the interception init container, hostAliases
with nginx's VIP, the immutable ConfigMap with the pinned endpoint list, the headless Service; and once the
(simulated) kubelet reports the pods Ready, both rollouts are COMPLETED and the services report their
running tasks.

hack/test.sh runs this against the current Kubernetes and again against the oldest supported one, 1.20
(`oldest_k8s`), so each form is checked on a server that gets it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from sc_operator.kube import (
    CONFIGMAPS,
    CONNECT_DEPLOYMENTS,
    CONNECT_NAMESPACES,
    CONNECT_SERVICES,
    DEPLOYMENTS,
    EVENTS,
    SERVICES,
    Kube,
)
from sc_operator.render.resources import POD_LEVEL_RESOURCES_VERSION
from support.envtest import KubeAPI
from support.operator import Kubelet, OperatorProcess, accepted, wait_for

pytestmark = pytest.mark.oldest_k8s

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def example(name: str, namespace: str, connect_ns: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["serviceConnectConfiguration"]["namespace"] = connect_ns
    return doc


def pod_template(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = kube.get(DEPLOYMENTS, name, namespace)["spec"]["template"]
    return spec


def test_tutorial_nginx_and_client(
    operator: OperatorProcess,
    kube: Kube,
    kube_api: KubeAPI,
    namespace: str,
    connect_namespace: str,
    kubelet: Kubelet,
) -> None:
    nginx = example("10-nginx.yaml", namespace, connect_namespace)
    client = example("20-client.yaml", namespace, connect_namespace)
    kube.create(CONNECT_SERVICES, nginx, namespace)
    cond = wait_for("nginx Accepted", lambda: accepted(kube, namespace, nginx["metadata"]["name"]))
    assert cond["status"] == "True", cond
    # Deploy servers first, then clients (the documented order): the client pins nginx.
    kube.create(CONNECT_SERVICES, client, namespace)
    cond = wait_for("client Accepted", lambda: accepted(kube, namespace, "client"))
    assert cond["status"] == "True", cond

    registry = kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]
    assert [
        (e["discoveryName"], e["dnsName"], e["port"], e.get("appProtocol")) for e in registry["endpoints"]
    ] == [("nginx", "nginx", 80, "http")]
    assert registry["endpoints"][0]["service"] == {"namespace": namespace, "name": nginx["metadata"]["name"]}
    assert (registry["serviceCount"], registry["revision"]) == (2, 2)

    # The client's rollout: its ConfigMap pins nginx; its pods resolve nginx to a VIP.
    client_cd = wait_for(
        "client ConnectDeployment",
        lambda: kube.list(CONNECT_DEPLOYMENTS, namespace, {"serviceconnect.dev/service": "client"}),
    )
    assert len(client_cd) == 1
    cd = client_cd[0]
    assert [e["discoveryName"] for e in cd["spec"]["endpoints"]] == ["nginx"]
    cm = kube.get(CONFIGMAPS, cd["metadata"]["name"], namespace)
    assert cm["immutable"] is True
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "ConnectDeployment"
    config = json.loads(next(iter(cm["data"].values())))
    assert [a["address"] for a in config["aliases"]] == ["127.255.0.1"]
    assert config["aliases"][0]["port"] == 80

    template = pod_template(kube, namespace, "client")
    pod = template["spec"]
    assert pod["hostAliases"] == [{"ip": "127.255.0.1", "hostnames": ["nginx"]}]
    init_names = [c["name"] for c in pod["initContainers"]]
    app_names = [c["name"] for c in pod["containers"]]
    # The version comes from the binary (`kube-apiserver --version`), not from the operator's own reading.
    if kube_api.version >= (1, 29):
        # A native sidecar: started after the interception rules, kept running, apps wait for its probe.
        assert init_names == ["sc-intercept", "sc-proxy"], init_names
        assert "sc-proxy" not in app_names, app_names
        proxy = pod["initContainers"][1]
        assert proxy["restartPolicy"] == "Always"
        assert proxy["startupProbe"]["httpGet"]["path"] == "/ready"
        assert proxy["startupProbe"]["httpGet"]["port"] == proxy["readinessProbe"]["httpGet"]["port"]
        assert "lifecycle" not in proxy
    else:
        # No native sidecars: the proxy runs first, and its postStart hook holds the apps back.
        assert init_names == ["sc-intercept"], init_names
        assert app_names[0] == "sc-proxy", app_names
        proxy = pod["containers"][0]
        assert "wait-ready" in " ".join(proxy["lifecycle"]["postStart"]["exec"]["command"])
        assert "restartPolicy" not in proxy
        assert "startupProbe" not in proxy
    assert proxy["securityContext"]["runAsNonRoot"] is True
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/ready"
    # 256 CPU units; the client's container reserves nothing, so the proxy's share is whole either way.
    assert proxy["resources"]["requests"] == {"cpu": "250m", "memory": "64Mi"}
    if kube_api.version >= POD_LEVEL_RESOURCES_VERSION:
        # The task size is the pod's; the proxy has no limit of its own, the pod's bounds it.
        assert pod["resources"]["limits"] == {"cpu": "250m", "memory": "512Mi"}
        assert "limits" not in proxy["resources"]
    else:
        assert "resources" not in pod
        assert proxy["resources"]["limits"] == {"memory": "128Mi"}
    assert any(m["mountPath"] == "/etc/serviceconnect" and m.get("readOnly") for m in proxy["volumeMounts"])
    init = pod["initContainers"][0]
    assert sorted(init["securityContext"]["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    assert init["securityContext"]["runAsUser"] == 0
    assert template["metadata"]["labels"]["serviceconnect.dev/deployment"] == cd["metadata"]["name"]
    assert "serviceconnect.dev/config-hash" in template["metadata"]["annotations"]

    # nginx: the task's container with ECS sizes, the headless Service with its named ingress port.
    nginx_pod = pod_template(kube, namespace, nginx["metadata"]["name"])["spec"]
    web = next(c for c in nginx_pod["containers"] if c["name"] == "webserver")
    assert web["resources"]["requests"]["cpu"] == "98m"  # 100 CPU units x 1000/1024, rounded up
    if kube_api.version >= POD_LEVEL_RESOURCES_VERSION:
        # The proxy requests what webserver's 98m leaves of the task's 250m.
        nginx_proxy = next(c for c in nginx_pod["initContainers"] if c["name"] == "sc-proxy")
        assert nginx_proxy["resources"]["requests"] == {"cpu": "152m", "memory": "64Mi"}
    else:
        # No pod-level resources: the task's 512 MiB less the proxy's 128 MiB limit.
        assert web["resources"]["limits"]["memory"] == "384Mi"
    headless = kube.list(SERVICES, namespace, {"serviceconnect.dev/service": nginx["metadata"]["name"]})
    assert len(headless) == 1
    assert headless[0]["spec"]["clusterIP"] == "None"
    assert headless[0]["spec"]["ports"][0]["name"] == "sc-http"
    deployment = kube.get(DEPLOYMENTS, nginx["metadata"]["name"], namespace)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "100%", "maxUnavailable": "100%"}

    # The simulated kubelet reports every pod Ready: both rollouts complete.
    for name in (nginx["metadata"]["name"], "client"):
        wait_for(f"{name} pods", lambda n=name: kubelet.ready_all({"serviceconnect.dev/service": n}))
    for name in (nginx["metadata"]["name"], "client"):
        status = wait_for(
            f"{name} COMPLETED",
            lambda n=name: (
                (s := kube.get(CONNECT_SERVICES, n, namespace)["status"])["deployments"][0]["rolloutState"]
                == "COMPLETED"
                and s
            ),
        )
        assert (status["desiredCount"], status["runningCount"], status["pendingCount"]) == (1, 1, 0)
        assert status["deployments"][0]["status"] == "PRIMARY"
        assert any("steady state" in e["message"] for e in status["events"])
    nginx_status = kube.get(CONNECT_SERVICES, nginx["metadata"]["name"], namespace)["status"]
    assert nginx_status["serviceConnectResources"] == [{"discoveryName": "nginx"}]
    reasons = {e["reason"] for e in kube.list(EVENTS, namespace)}
    assert {"Accepted", "SteadyState"} <= reasons
    assert wait_for(
        "task count", lambda: kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]["taskCount"] == 2
    )
