"""The chart's RBAC is enough and no more: the operator runs under the chart's ServiceAccount.

The ServiceAccount, ClusterRole and ClusterRoleBinding are created from the rendered chart; the real
kube-controller-manager issues the account's token (its token controller fills a service-account-token
Secret: 1.24 and later no longer create one per account by themselves), and sc-operator runs with
only that token, webhooks on. A ConnectService must then be Accepted and materialised, its task pods
admitted by the pod webhook (which reads ReplicaSets and Deployments under the same account). Taking
one permission away from the role must break it.
"""

from __future__ import annotations

import base64
import copy
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sc_operator import API_VERSION
from sc_operator.kube import (
    CONFIGMAPS,
    CONNECT_NAMESPACES,
    CONNECT_SERVICES,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    Kube,
)
from sc_operator.reconcile.tls import SECRETS
from support.envtest import KubeAPI
from support.helmchart import Helm, one
from support.kubectl import Kubectl
from support.operator import accepted, service_body, wait_for
from support.webhookenv import SCOPE_LABEL, WebhookServer, scoped_webhook_config, start_webhook_operator

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")


@pytest.fixture(scope="module")
def scope() -> str:
    # A leading letter: hex digits alone may read as a number to the API server's YAML (1e345678).
    return f"s{uuid.uuid4().hex[:7]}"


@pytest.fixture(scope="module")
def chart_rbac(helm: Helm, kubectl: Kubectl, kube: Kube, scope: str) -> Iterator[dict[str, Any]]:
    """The chart's ServiceAccount and cluster role, created in a fresh release namespace."""
    release_ns = f"sc-rbac-{scope}"
    kube.create(NAMESPACES, {"metadata": {"name": release_ns}})
    docs = helm.template(release=f"rbac-{scope}", namespace=release_ns)
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    kubectl("apply", "-f", "-", input="".join(f"---\n{yaml.safe_dump(d)}" for d in rbac))
    try:
        yield {kind: one(rbac, kind) for kind in RBAC_KINDS}
    finally:
        for kind in ("ClusterRoleBinding", "ClusterRole"):
            kubectl("delete", kind.lower(), one(rbac, kind)["metadata"]["name"], "--ignore-not-found")
        kube.delete(NAMESPACES, release_ns)


def _token(kube: Kube, sa: dict[str, Any]) -> str:
    """A token for ``sa`` issued by kube-controller-manager into a Secret of type service-account-token."""
    ns, name = sa["metadata"]["namespace"], sa["metadata"]["name"]
    secret_name = f"{name}-test-token"
    kube.request(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        body={
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name, "annotations": {"kubernetes.io/service-account.name": name}},
            "type": "kubernetes.io/service-account-token",
        },
    )

    def issued() -> str | None:
        secret = kube.request("GET", f"/api/v1/namespaces/{ns}/secrets/{secret_name}")
        token = (secret.get("data") or {}).get("token")
        return base64.b64decode(token).decode() if token else None

    return wait_for(f"a token for ServiceAccount {ns}/{name}", issued, timeout=60)


@pytest.fixture(scope="module")
def sa_kubeconfig(
    kube_api: KubeAPI, kube: Kube, chart_rbac: dict[str, Any], controller_manager: Any, tmp_path_factory: Any
) -> Path:
    token = _token(kube, chart_rbac["ServiceAccount"])
    path = Path(tmp_path_factory.mktemp("sa")) / "kubeconfig"
    doc = yaml.safe_load(kube_api.kubeconfig.read_text())
    doc["users"] = [{"name": "admin", "user": {"token": token}}]  # same context, the account's token
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def test_the_token_really_is_the_service_account(kubectl: Kubectl, sa_kubeconfig: Path) -> None:
    # Guard against a test that passes because it runs as admin: the account may not list Secrets.
    as_sa = Kubectl(kubectl.binary, sa_kubeconfig)
    assert as_sa.run("auth", "can-i", "list", "secrets", "-A", check=False).stdout.strip() == "no"
    assert as_sa("auth", "can-i", "create", "deployments.apps", "-n", "default").strip() == "yes"


@pytest.fixture(scope="module")
def operator_as_sa(
    kube_api: KubeAPI, sa_kubeconfig: Path, crds_installed: list[str], tmp_path_factory: Any
) -> Iterator[WebhookServer]:
    server = start_webhook_operator(
        kube_api, Path(tmp_path_factory.mktemp("operator-sa")), env={"KUBECONFIG": str(sa_kubeconfig)}
    )
    try:
        yield server
    finally:
        server.operator.stop()


@pytest.fixture(scope="module")
def scoped_webhooks(
    helm: Helm, kubectl: Kubectl, operator_as_sa: WebhookServer, scope: str
) -> Iterator[None]:
    name = f"sc-rbac-webhooks-{scope}"
    config = scoped_webhook_config(helm, operator_as_sa, name, scope)
    kubectl("apply", "-f", "-", input=yaml.safe_dump(config))
    try:
        yield
    finally:
        kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")


@pytest.fixture
def workspace(kube: Kube, scope: str, scoped_webhooks: None) -> Iterator[tuple[str, str]]:
    """A Kubernetes namespace the webhooks watch and a ConnectNamespace for its services."""
    ns, cns = f"rbac-{uuid.uuid4().hex[:8]}", f"cns-rbac-{uuid.uuid4().hex[:8]}"
    kube.create(NAMESPACES, {"metadata": {"name": ns, "labels": {SCOPE_LABEL: scope}}})
    kube.create(
        CONNECT_NAMESPACES,
        {"apiVersion": API_VERSION, "kind": "ConnectNamespace", "metadata": {"name": cns}},
    )
    try:
        yield ns, cns
    finally:
        kube.delete(NAMESPACES, ns)
        kube.delete(CONNECT_NAMESPACES, cns)


def _forbidden_lines(server: WebhookServer) -> list[str]:
    # 403 as a word: the random names of the test's namespaces may contain the digits (cns-rbac-e4033414).
    lines = server.operator.log().splitlines()
    return [ln for ln in lines if re.search(r"\b403\b", ln) or "forbidden" in ln.lower()]


def test_operator_under_the_chart_role_runs_a_service(
    kube: Kube, operator_as_sa: WebhookServer, workspace: tuple[str, str]
) -> None:
    ns, cns = workspace
    kube.create(CONNECT_SERVICES, service_body("web", ns, cns), ns)
    cond = wait_for("web Accepted", lambda: accepted(kube, ns, "web"), timeout=90)
    assert cond["status"] == "True", cond
    wait_for("web's Deployment", lambda: kube.get_or_none(DEPLOYMENTS, "web", ns), timeout=60)
    # Its pod exists: the pod webhook, running as the account, followed the owner chain and admitted it.
    wait_for("web's task pod", lambda: kube.list(PODS, ns, {"serviceconnect.dev/service": "web"}), timeout=60)
    registry = kube.get(CONNECT_NAMESPACES, cns).get("status") or {}
    assert [ep["discoveryName"] for ep in registry.get("endpoints") or []] == ["web"]
    assert _forbidden_lines(operator_as_sa) == []


def test_a_permission_the_chart_lacks_breaks_the_operator(
    kube: Kube,
    kubectl: Kubectl,
    chart_rbac: dict[str, Any],
    operator_as_sa: WebhookServer,
    workspace: tuple[str, str],
) -> None:
    role = copy.deepcopy(chart_rbac["ClusterRole"])
    for rule in role["rules"]:
        if rule["apiGroups"] == ["apps"] and "deployments" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(role))
    try:
        ns, cns = workspace
        kube.create(CONNECT_SERVICES, service_body("starved", ns, cns), ns)
        lines = wait_for(
            "the operator to be refused creating the Deployment",
            lambda: [ln for ln in _forbidden_lines(operator_as_sa) if "deployments" in ln],
            timeout=90,
        )
        assert lines
        assert kube.get_or_none(DEPLOYMENTS, "starved", ns) is None
    finally:
        kubectl("apply", "-f", "-", input=yaml.safe_dump(chart_rbac["ClusterRole"]))
    # With the chart's role back, the operator converges (its resync retries the service).
    wait_for(
        "starved's Deployment once allowed", lambda: kube.get_or_none(DEPLOYMENTS, "starved", ns), timeout=90
    )


def test_tls_issuance_under_the_chart_role(
    kube: Kube, operator_as_sa: WebhookServer, workspace: tuple[str, str]
) -> None:
    """The role's Secret and ConfigMap rules are enough to issue a leaf and publish the CA bundle."""
    ns, cns = workspace
    server = service_body("tlsweb", ns, cns)
    server["spec"]["serviceConnectConfiguration"]["services"][0]["tls"] = {"issuerCertificateAuthority": {}}
    kube.create(CONNECT_SERVICES, server, ns)
    cond = wait_for("tlsweb Accepted", lambda: accepted(kube, ns, "tlsweb"), timeout=90)
    assert cond["status"] == "True", cond
    kube.create(CONNECT_SERVICES, service_body("tlsclient", ns, cns, serve=False), ns)
    cond = wait_for("tlsclient Accepted", lambda: accepted(kube, ns, "tlsclient"), timeout=90)
    assert cond["status"] == "True", cond
    secret = kube.get(SECRETS, "sc-tls-tlsweb", ns)
    assert secret["type"] == "kubernetes.io/tls"
    bundle = kube.get(CONFIGMAPS, f"sc-ca-{cns}", ns)
    assert "BEGIN CERTIFICATE" in bundle["data"]["ca.crt"]
    # (The log holds the earlier tests' lines too: only this namespace's count.)
    assert [ln for ln in _forbidden_lines(operator_as_sa) if ns in ln] == []


def test_without_the_secrets_rule_no_certificate_is_issued(
    kube: Kube,
    kubectl: Kubectl,
    chart_rbac: dict[str, Any],
    operator_as_sa: WebhookServer,
    workspace: tuple[str, str],
) -> None:
    role = copy.deepcopy(chart_rbac["ClusterRole"])
    role["rules"] = [r for r in role["rules"] if "secrets" not in r["resources"]]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(role))
    try:
        ns, cns = workspace
        server = service_body("nosecret", ns, cns)
        server["spec"]["serviceConnectConfiguration"]["services"][0]["tls"] = {
            "issuerCertificateAuthority": {}
        }
        kube.create(CONNECT_SERVICES, server, ns)
        lines = wait_for(
            "the operator to be refused reading Secrets",
            lambda: [ln for ln in _forbidden_lines(operator_as_sa) if "secrets" in ln],
            timeout=90,
        )
        assert lines
        assert kube.get_or_none(SECRETS, "sc-tls-nosecret", ns) is None
    finally:
        kubectl("apply", "-f", "-", input=yaml.safe_dump(chart_rbac["ClusterRole"]))
    wait_for("the leaf once allowed", lambda: kube.get_or_none(SECRETS, "sc-tls-nosecret", ns), timeout=90)
