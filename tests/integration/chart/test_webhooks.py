"""The admission webhooks on a real kube-apiserver, served by the real operator process.

The API server calls the operator's webhook server on a loopback address over TLS with a test CA. The
ValidatingWebhookConfiguration is the one the chart renders, with two changes for a shared test API
server: clientConfig points at the loopback URL instead of the in-cluster Service, and each webhook is
narrowed (namespace/object selector) to this module's objects so that other tests never see it.
"""

from __future__ import annotations

import base64
import copy
import shutil
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sc_operator.kube import CONNECT_NAMESPACES, DEPLOYMENTS, NAMESPACES, PODS, REPLICASETS, Kube
from sc_operator.validation import DEPLOYMENT_CONTROLLER_MESSAGE, STANDALONE_TASK_MESSAGE
from support.certs import write_certs
from support.envtest import REPO, KubeAPI
from support.helmchart import Helm, by_kind
from support.kubectl import Kubectl
from support.operator import OperatorProcess, wait_for
from support.procs import free_port

SCOPE_LABEL = "serviceconnect.dev/webhook-test"


@pytest.fixture(scope="module")
def scope() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Iterator[Kube]:
    client = kube_api.api_client()
    try:
        yield Kube(client)
    finally:
        client.close()


@pytest.fixture(scope="module")
def webhook_operator(
    kube_api: KubeAPI,
    controller_manager: Any,
    crds_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OperatorProcess, int, Path]]:
    """sc-operator with webhooks on, serving 127.0.0.1:<port> with a certificate of a test CA."""
    tmp = tmp_path_factory.mktemp("webhook-operator")
    pki = write_certs(tmp / "pki")  # CA + serving cert for 127.0.0.1
    cert_dir = tmp / "tls"
    cert_dir.mkdir()
    shutil.copy(pki.serving_cert, cert_dir / "tls.crt")
    shutil.copy(pki.serving_key, cert_dir / "tls.key")
    port = free_port()
    op = OperatorProcess(
        kube_api,
        tmp,
        env={
            "SERVICECONNECT_WEBHOOK_ENABLED": "true",
            "SERVICECONNECT_WEBHOOK_ADDR": "127.0.0.1",
            "SERVICECONNECT_WEBHOOK_PORT": str(port),
            "SERVICECONNECT_WEBHOOK_CERT_DIR": str(cert_dir),
            "SERVICECONNECT_WEBHOOK_EXCLUDE_NAMESPACES": "kube-system",
        },
    )
    op.start()
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))

    def serving() -> bool:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            return tls.version() is not None

    try:
        wait_for("the operator's webhook server", lambda: _quiet(serving), timeout=60)
        yield op, port, pki.ca_cert
    finally:
        op.stop()


def _quiet(check: Any) -> Any:
    try:
        return check()
    except OSError:
        return None


@pytest.fixture(scope="module")
def webhook_config(
    helm: Helm, kubectl: Kubectl, webhook_operator: tuple[OperatorProcess, int, Path], scope: str
) -> Iterator[str]:
    """The chart's ValidatingWebhookConfiguration, aimed at the loopback server and scoped to this module."""
    _, port, ca = webhook_operator
    (config,) = by_kind(helm.template(namespace="sc-system"), "ValidatingWebhookConfiguration")
    config = copy.deepcopy(config)
    name = f"sc-webhook-test-{scope}"
    config["metadata"]["name"] = name
    for hook in config["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {
            "url": f"https://127.0.0.1:{port}{path}",
            "caBundle": base64.b64encode(ca.read_bytes()).decode(),
        }
        if "namespaceSelector" in hook:
            hook["namespaceSelector"]["matchLabels"] = {SCOPE_LABEL: scope}
        else:
            hook["objectSelector"]["matchLabels"] = {SCOPE_LABEL: scope}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(config))
    try:
        yield name
    finally:
        # Before the operator stops: a Fail policy with no server would block this module's objects.
        kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")


@pytest.fixture
def test_ns(kube: Kube, scope: str, webhook_config: str) -> Iterator[str]:
    name = f"wh-{uuid.uuid4().hex[:8]}"
    kube.create(
        NAMESPACES,
        {"metadata": {"name": name, "labels": {SCOPE_LABEL: scope, "serviceconnect.dev/test": "true"}}},
    )
    try:
        yield name
    finally:
        kube.delete(NAMESPACES, name)


@pytest.fixture
def connect_namespace(kube: Kube, scope: str, webhook_config: str) -> Iterator[str]:
    name = f"cns-{uuid.uuid4().hex[:8]}"
    kube.create(
        CONNECT_NAMESPACES,
        {
            "apiVersion": "serviceconnect.dev/v1alpha1",
            "kind": "ConnectNamespace",
            "metadata": {"name": name, "labels": {SCOPE_LABEL: scope}},
        },
    )
    yield name
    kube.delete(CONNECT_NAMESPACES, name)


def nginx(namespace: str, connect_ns: str, name: str = "nginx") -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "10-nginx.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"]["serviceConnectConfiguration"]["namespace"] = connect_ns
    return doc


def _apply(kubectl: Kubectl, doc: dict[str, Any]) -> Any:
    return kubectl.run("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)


def test_code_deploy_service_is_refused_at_apply(
    kubectl: Kubectl, test_ns: str, connect_namespace: str
) -> None:
    doc = nginx(test_ns, connect_namespace, "blue-green")
    doc["spec"]["deploymentController"] = {"type": "CODE_DEPLOY"}
    proc = _apply(kubectl, doc)
    assert proc.returncode != 0
    assert 'admission webhook "validate-connectservice.serviceconnect.dev" denied the request' in proc.stderr
    assert DEPLOYMENT_CONTROLLER_MESSAGE in proc.stderr
    assert "spec.deploymentController" in proc.stderr
    assert kubectl.run("get", "connectservice", "blue-green", "-n", test_ns, check=False).returncode != 0


def test_valid_service_passes_and_its_tasks_are_admitted(
    kubectl: Kubectl, kube: Kube, test_ns: str, connect_namespace: str
) -> None:
    proc = _apply(kubectl, nginx(test_ns, connect_namespace))
    assert proc.returncode == 0, proc.stderr
    assert "connectservice.serviceconnect.dev/nginx created" in proc.stdout
    # The operator renders its Deployment; the ReplicaSet controller creates the pod, which carries our
    # label and passes the pod webhook because its owner chain leads to the ConnectService.
    pods = wait_for(
        "a task pod of the nginx service",
        lambda: kube.list(PODS, test_ns, {"serviceconnect.dev/service": "nginx"}),
        timeout=90,
    )
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet"


def test_standalone_pod_asking_for_service_connect_is_refused(kubectl: Kubectl, test_ns: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "standalone",
            "namespace": test_ns,
            "labels": {"serviceconnect.dev/service": "x"},
        },
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }
    proc = _apply(kubectl, pod)
    assert proc.returncode != 0
    assert 'admission webhook "validate-pod.serviceconnect.dev" denied the request' in proc.stderr
    assert STANDALONE_TASK_MESSAGE in proc.stderr
    # The same pod without our label is none of our business.
    del pod["metadata"]["labels"]
    assert _apply(kubectl, pod).returncode == 0


def test_pods_of_a_plain_deployment_asking_for_service_connect_are_refused(kube: Kube, test_ns: str) -> None:
    labels = {"app": "impostor", "serviceconnect.dev/service": "impostor"}
    kube.create(
        DEPLOYMENTS,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "impostor"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
                },
            },
        },
        test_ns,
    )

    def refusal() -> str | None:
        for rs in kube.list(REPLICASETS, test_ns, {"app": "impostor"}):
            for cond in rs.get("status", {}).get("conditions") or []:
                if cond.get("type") == "ReplicaFailure":
                    return str(cond.get("message"))
        return None

    message = wait_for("the ReplicaSet to report the refused pod", refusal, timeout=60)
    assert STANDALONE_TASK_MESSAGE in message
    assert "was not created for a ConnectService" in message
    assert kube.list(PODS, test_ns, {"app": "impostor"}) == []


def test_connect_namespaces_pass_through_the_webhook(
    kubectl: Kubectl, scope: str, webhook_config: str
) -> None:
    # Fail-closed: if the handler broke on a cluster-scoped object, this valid one could not be created.
    doc = {
        "apiVersion": "serviceconnect.dev/v1alpha1",
        "kind": "ConnectNamespace",
        "metadata": {"name": f"cns-ok-{scope}", "labels": {SCOPE_LABEL: scope}},
        "spec": {"description": "admitted"},
    }
    proc = _apply(kubectl, doc)
    assert proc.returncode == 0, proc.stderr
    kubectl("delete", "connectnamespace", doc["metadata"]["name"], "--wait=false")
    # Invalid specs are refused naming the field (the CRD schema answers first; the webhook agrees).
    doc["spec"]["description"] = "x" * 1025
    proc = _apply(kubectl, doc)
    assert proc.returncode != 0
    assert "spec.description" in proc.stderr
