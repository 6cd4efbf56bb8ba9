"""The admission webhooks on a real kube-apiserver, served by the real operator process.

The API server calls the operator's webhook server on a loopback address over TLS with a test CA, as
configured by the chart's ValidatingWebhookConfiguration (see support.webhookenv for the two changes a
shared test API server needs).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from sc_operator.kube import CONNECT_NAMESPACES, DEPLOYMENTS, NAMESPACES, PODS, REPLICASETS, Kube
from sc_operator.validation import DEPLOYMENT_CONTROLLER_MESSAGE, STANDALONE_TASK_MESSAGE
from support.envtest import REPO, KubeAPI
from support.helmchart import Helm
from support.kubectl import Kubectl
from support.operator import service_body, wait_for
from support.webhookenv import SCOPE_LABEL, WebhookServer, scoped_webhook_config, start_webhook_operator


@pytest.fixture(scope="module")
def scope() -> str:
    # A leading letter: hex digits alone may read as a number to the API server's YAML (1e345678).
    return f"s{uuid.uuid4().hex[:7]}"


@pytest.fixture(scope="module")
def webhook_server(
    kube_api: KubeAPI,
    controller_manager: Any,
    crds_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookServer]:
    server = start_webhook_operator(kube_api, tmp_path_factory.mktemp("webhook-operator"))
    try:
        yield server
    finally:
        server.operator.stop()


@pytest.fixture(scope="module")
def webhook_config(helm: Helm, kubectl: Kubectl, webhook_server: WebhookServer, scope: str) -> Iterator[str]:
    name = f"sc-webhook-test-{scope}"
    kubectl(
        "apply", "-f", "-", input=yaml.safe_dump(scoped_webhook_config(helm, webhook_server, name, scope))
    )
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


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            {"requiresCompatibilities": ["EXTERNAL"]},
            "spec.taskDefinition.requiresCompatibilities[0]: [external-instances]",
            "ECS Anywhere External container instances are not supported by Service Connect",
        ),
        (
            {"networkMode": "host"},
            "spec.taskDefinition.networkMode: [network-mode]",
            "Service Connect supports the awsvpc and bridge network modes, not host",
        ),
    ],
    ids=["ecs-anywhere", "host-mode"],
)
def test_what_service_connect_does_not_support_is_refused_at_apply(
    kubectl: Kubectl, test_ns: str, connect_namespace: str, change: dict[str, Any], field: str, words: str
) -> None:
    doc = nginx(test_ns, connect_namespace, "unsupported")
    doc["spec"]["taskDefinition"].update(change)
    proc = _apply(kubectl, doc)
    assert proc.returncode != 0
    assert 'admission webhook "validate-connectservice.serviceconnect.dev" denied the request' in proc.stderr
    assert field in proc.stderr
    assert words in proc.stderr
    assert kubectl.run("get", "connectservice", "unsupported", "-n", test_ns, check=False).returncode != 0


def test_aws_private_ca_is_refused_at_apply_saying_what_to_use(
    kubectl: Kubectl, scope: str, test_ns: str, connect_namespace: str
) -> None:
    doc = nginx(test_ns, connect_namespace, "pca")
    pca = {"awsPcaAuthorityArn": "arn:aws:acm-pca:us-east-1:1:certificate-authority/x"}
    doc["spec"]["serviceConnectConfiguration"]["services"][0]["tls"] = {
        "issuerCertificateAuthority": pca,
        "kmsKey": "arn:aws:kms:us-east-1:1:key/k",
    }
    proc = _apply(kubectl, doc)
    assert proc.returncode != 0
    assert "tls.issuerCertificateAuthority.awsPcaAuthorityArn: [tls-aws-pca]" in proc.stderr
    assert "secretName (a Secret with your CA's tls.crt and tls.key) or issuerRef" in proc.stderr
    assert "tls.kmsKey: [tls-kms-key] refused, not ignored" in proc.stderr
    # The ConnectNamespace default CA follows the same rule.
    cns = {
        "apiVersion": "serviceconnect.dev/v1alpha1",
        "kind": "ConnectNamespace",
        "metadata": {"name": f"cns-pca-{scope}", "labels": {SCOPE_LABEL: scope}},
        "spec": {"tls": {"issuerCertificateAuthority": pca}},
    }
    proc = _apply(kubectl, cns)
    assert proc.returncode != 0
    assert "spec.tls.issuerCertificateAuthority.awsPcaAuthorityArn: [tls-aws-pca]" in proc.stderr
    # {} is accepted.
    doc["spec"]["serviceConnectConfiguration"]["services"][0]["tls"] = {"issuerCertificateAuthority": {}}
    proc = _apply(kubectl, doc)
    assert proc.returncode == 0, proc.stderr


def test_an_imported_service_that_lost_service_connect_is_refused_at_apply(
    kubectl: Kubectl, test_ns: str, connect_namespace: str
) -> None:
    doc = nginx(test_ns, connect_namespace, "imported")
    doc["metadata"]["annotations"] = {"serviceconnect.dev/ecs-service-connect": "enabled"}
    del doc["spec"]["serviceConnectConfiguration"]
    proc = _apply(kubectl, doc)
    assert proc.returncode != 0
    assert "spec.serviceConnectConfiguration: [imported-service-connect]" in proc.stderr


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


def test_a_taken_discovery_name_is_refused_at_apply(
    kubectl: Kubectl, kube: Kube, test_ns: str, connect_namespace: str
) -> None:
    assert _apply(kubectl, service_body("first", test_ns, connect_namespace, discovery="api")).returncode == 0
    wait_for(
        "first registered in its ConnectNamespace",
        lambda: (kube.get(CONNECT_NAMESPACES, connect_namespace).get("status") or {}).get("endpoints"),
        timeout=90,
    )
    proc = _apply(kubectl, service_body("second", test_ns, connect_namespace, discovery="api", dns="api2"))
    assert proc.returncode != 0
    assert "[discovery-name-duplicate] discovery names must be unique within a namespace" in proc.stderr
    assert f"by {test_ns}/first" in proc.stderr
