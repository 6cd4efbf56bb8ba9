"""The test API server is a real one: TLS, token authentication, RBAC, controllers, GC.

Version-sensitive (the flags it starts with depend on the version): these tests also run against the
oldest supported Kubernetes (`oldest_k8s`, the second pytest run of hack/test.sh).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from support.envtest import KubeAPI
from support.kubectl import Kubectl
from support.procs import Proc

pytestmark = pytest.mark.oldest_k8s


def _status_without_token(api: KubeAPI, path: str) -> int:
    ctx = ssl.create_default_context(cafile=str(api.certs.ca_cert))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    try:
        with opener.open(api.url + path, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_serves_the_started_kubernetes_version_over_verified_tls(kube_api: KubeAPI) -> None:
    assert kube_api.url.startswith("https://127.0.0.1:")
    version = kube_api.get("/version")
    # What `kube-apiserver --version` said is what answers: the version-dependent tests trust it.
    assert version["gitVersion"] == kube_api.git_version
    assert (int(version["major"]), int(version["minor"].rstrip("+"))) == kube_api.version
    assert kube_api.version >= (1, 20), "older than the oldest supported Kubernetes"


def test_anonymous_requests_are_refused_by_rbac(kube_api: KubeAPI) -> None:
    # Anonymous is authenticated as system:anonymous; RBAC (not AlwaysAllow) must refuse it.
    assert _status_without_token(kube_api, "/api/v1/namespaces") == 403
    namespaces = kube_api.get("/api/v1/namespaces")
    assert "kube-system" in {n["metadata"]["name"] for n in namespaces["items"]}


def test_kubectl_uses_the_written_kubeconfig(kubectl: Kubectl, kube_api: KubeAPI) -> None:
    out = json.loads(kubectl("version", "-o", "json"))
    assert out["serverVersion"]["gitVersion"] == kube_api.git_version
    assert "kube-system" in kubectl("get", "namespaces", "-o", "name")


def _wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_controller_manager_rolls_out_and_garbage_collects(
    controller_manager: Proc, api_client: Any, namespace: str
) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    # No nodes exist: the pods stay Pending, which is all this test needs.
                    "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]},
                },
            },
        },
    )
    rs = _wait_for(
        "a ReplicaSet owned by the Deployment",
        lambda: apps.list_namespaced_replica_set(namespace, label_selector="app=web").items,
    )
    assert rs[0].metadata.owner_references[0].kind == "Deployment"
    pods = _wait_for(
        "two Pods from the ReplicaSet",
        lambda: (
            (p := core.list_namespaced_pod(namespace, label_selector="app=web").items) and len(p) == 2 and p
        ),
    )
    assert {p.metadata.owner_references[0].kind for p in pods} == {"ReplicaSet"}

    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    _wait_for(
        "the garbage collector to delete the ReplicaSet",
        lambda: not apps.list_namespaced_replica_set(namespace, label_selector="app=web").items,
    )
