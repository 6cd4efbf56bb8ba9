"""TLS issuance on a real API server: the operator issues, stores, renews and cleans up certificates, and
publishes the CA bundle where clients are.

Real: the API server, kube-controller-manager (garbage collection of the leaf Secret), the operator
process, ``openssl verify``. Not here: cert-manager itself (no images): its ``Certificate`` CRD is
installed (a minimal copy) to prove the operator creates the object; nothing fills its Secret.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from sc_operator import API_VERSION
from sc_operator.certs import CertificateAuthority, new_ca
from sc_operator.kube import (
    CONFIGMAPS,
    CONNECT_DEPLOYMENTS,
    CONNECT_NAMESPACES,
    CONNECT_SERVICES,
    DEPLOYMENTS,
    EVENTS,
    NAMESPACES,
    Kube,
)
from sc_operator.reconcile.tls import CERTIFICATES, SECRETS
from support.envtest import KubeAPI
from support.operator import OperatorProcess, accepted, service_body, wait_for

TLS = {"issuerCertificateAuthority": {}}


@pytest.fixture(scope="module")
def ca_ns(kube: Kube, crds_installed: list[str]) -> Iterator[str]:
    name = f"sc-ca-{uuid.uuid4().hex[:8]}"
    kube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    kube.delete(NAMESPACES, name)


@pytest.fixture(scope="module")
def tls_operator(
    kube_api: KubeAPI, controller_manager: Any, ca_ns: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(kube_api, tmp_path_factory.mktemp("tls-operator"), env={"SC_CA_NAMESPACE": ca_ns})
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def client_ns(kube: Kube) -> Iterator[str]:
    name = f"sc-client-{uuid.uuid4().hex[:8]}"
    kube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    kube.delete(NAMESPACES, name)


def tls_service(name: str, ns: str, cns: str, tls: dict[str, Any] | None = None) -> dict[str, Any]:
    body = service_body(name, ns, cns)
    body["spec"]["serviceConnectConfiguration"]["services"][0]["tls"] = copy.deepcopy(tls or TLS)
    return body


def _ca_secret(name: str, ca: CertificateAuthority) -> dict[str, Any]:
    data = {
        "tls.crt": base64.b64encode(ca.cert_pem).decode(),
        "tls.key": base64.b64encode(ca.key_pem).decode(),
    }
    return {"metadata": {"name": name}, "type": "kubernetes.io/tls", "data": data}


def _accepted(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    cond = wait_for(f"{name} judged", lambda: accepted(kube, ns, name), timeout=60)
    return cond


def _leaf(kube: Kube, ns: str, name: str) -> tuple[dict[str, Any], x509.Certificate]:
    secret = wait_for(f"the leaf Secret of {name}", lambda: kube.get_or_none(SECRETS, f"sc-tls-{name}", ns))
    pem = base64.b64decode(secret["data"]["tls.crt"])
    return secret, x509.load_pem_x509_certificates(pem)[0]


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName)), san.get_values_for_type(
        x509.UniformResourceIdentifier
    )


def _proxy_doc(kube: Kube, ns: str, service: str) -> dict[str, Any]:
    (rollout,) = kube.list(CONNECT_DEPLOYMENTS, ns, {"serviceconnect.dev/service": service})
    cm = kube.get(CONFIGMAPS, rollout["metadata"]["name"], ns)
    doc: dict[str, Any] = json.loads(cm["data"]["proxy.json"])
    return doc


def test_a_tls_service_and_its_client(
    tls_operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    client_ns: str,
    connect_namespace: str,
    ca_ns: str,
    tmp_path: Path,
) -> None:
    kube.create(CONNECT_SERVICES, tls_service("nginx", namespace, connect_namespace), namespace)
    assert _accepted(kube, namespace, "nginx")["status"] == "True"
    svc = kube.get(CONNECT_SERVICES, "nginx", namespace)
    secret, cert = _leaf(kube, namespace, "nginx")
    assert secret["type"] == "kubernetes.io/tls"
    assert [(o["kind"], o["uid"]) for o in secret["metadata"]["ownerReferences"]] == [
        ("ConnectService", svc["metadata"]["uid"])
    ]
    # Every name a client may use (discoveryName = dnsName "nginx", portName "http") and the identity.
    assert _sans(cert) == (
        ["http", "nginx"],
        [f"spiffe://{connect_namespace}/ns/{namespace}/connectservice/nginx"],
    )
    # The registry says the endpoint is TLS; the server's proxy listens with TLS, from the mounted Secret.
    registry = kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]
    assert [ep.get("tls") for ep in registry["endpoints"]] == [True]
    assert _proxy_doc(kube, namespace, "nginx")["ingress"][0]["tls"]["certFile"] == (
        "/var/run/serviceconnect/tls/nginx/tls.crt"
    )
    volumes = kube.get(DEPLOYMENTS, "nginx", namespace)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "sc-tls", "secret": {"secretName": "sc-tls-nginx", "defaultMode": 420}} in volumes

    # A client in another Kubernetes namespace pins the TLS endpoint and gets the bundle there.
    kube.create(
        CONNECT_SERVICES, service_body("client", client_ns, connect_namespace, serve=False), client_ns
    )
    assert _accepted(kube, client_ns, "client")["status"] == "True"
    bundle = wait_for(
        "the CA bundle in the client's namespace",
        lambda: kube.get_or_none(CONFIGMAPS, f"sc-ca-{connect_namespace}", client_ns),
    )
    pem = bundle["data"]["ca.crt"]
    assert "PRIVATE" not in pem
    assert _proxy_doc(kube, client_ns, "client")["endpoints"][0]["tls"] == {
        "caFile": f"/var/run/serviceconnect/ca/{connect_namespace}/ca.crt",
        "serverName": "nginx",
        "certFile": "/var/run/serviceconnect/tls/client/tls.crt",
        "keyFile": "/var/run/serviceconnect/tls/client/tls.key",
    }
    # The client's own certificate (presented when a server asks: mutual TLS) names only its identity.
    _, client_cert = _leaf(kube, client_ns, "client")
    assert _sans(client_cert) == ([], [f"spiffe://{connect_namespace}/ns/{client_ns}/connectservice/client"])
    status = kube.get(CONNECT_SERVICES, "client", client_ns)["status"]
    assert status["tlsCertificate"]["secretName"] == "sc-tls-client"
    assert status["tlsCertificate"]["notAfter"]
    # The CA's key is only in the CA namespace's Secret.
    ca_secret = kube.get(SECRETS, f"sc-ca-{connect_namespace}", ca_ns)
    assert ca_secret["data"]["tls.key"]

    # openssl (an independent verifier) accepts the leaf against the published bundle, for its names.
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl CLI missing"
    (tmp_path / "ca.crt").write_text(pem)
    (tmp_path / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    verify = [openssl, "verify", "-CAfile", str(tmp_path / "ca.crt"), "-purpose", "sslserver"]
    ok = subprocess.run([*verify, "-verify_hostname", "http", str(tmp_path / "tls.crt")], capture_output=True)
    assert ok.returncode == 0, ok.stderr

    # No key material in status, Events or the operator's log.
    key_line = base64.b64decode(secret["data"]["tls.key"]).decode().splitlines()[1]
    events = [e["message"] for e in kube.list(EVENTS, namespace, cached=False)]
    assert any("TLS certificate for http, nginx issued" in m for m in events), events
    assert "PRIVATE" not in str(events) + str(kube.get(CONNECT_SERVICES, "nginx", namespace)["status"])
    assert key_line not in tls_operator.log()

    # Deleting the service deletes its leaf (owner reference, garbage collector).
    kube.delete(CONNECT_SERVICES, "nginx", namespace)
    wait_for(
        "the leaf Secret to be garbage-collected",
        lambda: kube.get_or_none(SECRETS, "sc-tls-nginx", namespace) is None,
        timeout=60,
    )


def test_a_restarted_operator_does_not_reissue(
    tls_operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    kube.create(CONNECT_SERVICES, tls_service("web", namespace, connect_namespace), namespace)
    assert _accepted(kube, namespace, "web")["status"] == "True"
    before, cert = _leaf(kube, namespace, "web")
    tls_operator.stop()
    tls_operator.start()
    # A spec change after the restart makes the operator reconcile (and look at the certificate) again.
    kube.patch(CONNECT_SERVICES, "web", {"spec": {"desiredCount": 2}}, namespace)
    svc = kube.get(CONNECT_SERVICES, "web", namespace)
    wait_for(
        "web reconciled after the restart",
        lambda: (
            (kube.get(CONNECT_SERVICES, "web", namespace).get("status") or {}).get("observedGeneration")
            == svc["metadata"]["generation"]
        ),
    )
    after, again = _leaf(kube, namespace, "web")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert again.serial_number == cert.serial_number


def test_renewal_replaces_the_certificate_before_expiry(
    tls_operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    # Validity 60 s, renewed when 50 s remain: due 10 s after issuance; the resync timer runs every 3 s.
    tls_operator.stop()
    saved = dict(tls_operator.env)
    tls_operator.env.update(
        {"SC_TLS_CERTIFICATE_VALIDITY_SECONDS": "60", "SC_TLS_RENEW_BEFORE_SECONDS": "50"}
    )
    tls_operator.start()
    try:
        kube.create(CONNECT_SERVICES, tls_service("rot", namespace, connect_namespace), namespace)
        assert _accepted(kube, namespace, "rot")["status"] == "True"
        _, first = _leaf(kube, namespace, "rot")
        assert (first.not_valid_after_utc - first.not_valid_before_utc).total_seconds() == 60 + 300

        def renewed() -> x509.Certificate | None:
            _, cert = _leaf(kube, namespace, "rot")
            return cert if cert.serial_number != first.serial_number else None

        second = wait_for("the certificate renewed", renewed, timeout=40)
        assert second.not_valid_after_utc > first.not_valid_after_utc
        assert _sans(second) == _sans(first)
        secret = kube.get(SECRETS, "sc-tls-rot", namespace)
        assert secret["metadata"]["annotations"]["serviceconnect.dev/issued-because"] == "due for renewal"
    finally:
        tls_operator.stop()
        tls_operator.env.clear()
        tls_operator.env.update(saved)
        tls_operator.start()


def test_aws_private_ca_is_refused_and_nothing_is_created(
    tls_operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    pca = {
        "issuerCertificateAuthority": {
            "awsPcaAuthorityArn": "arn:aws:acm-pca:us-east-1:1:certificate-authority/x"
        }
    }
    kube.create(CONNECT_SERVICES, tls_service("pca", namespace, connect_namespace, pca), namespace)
    cond = _accepted(kube, namespace, "pca")
    assert (cond["status"], cond["reason"]) == ("False", "TlsAwsPca")
    assert "secretName" in cond["message"]
    assert kube.get_or_none(DEPLOYMENTS, "pca", namespace) is None
    assert kube.get_or_none(SECRETS, "sc-tls-pca", namespace) is None


def test_a_user_ca_in_a_secret(
    tls_operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    tls = {"issuerCertificateAuthority": {"secretName": "my-ca"}}
    kube.create(CONNECT_SERVICES, tls_service("own", namespace, connect_namespace, tls), namespace)
    cond = _accepted(kube, namespace, "own")
    assert (cond["status"], cond["reason"]) == ("False", "CaSecretNotFound")
    ca = new_ca("my own CA", dt.datetime.now(dt.UTC), dt.timedelta(days=30), "RSA_2048")
    kube.create(SECRETS, _ca_secret("my-ca", ca), namespace)
    # The refusal is retried by the timer once the Secret exists.
    wait_for("own accepted", lambda: (c := accepted(kube, namespace, "own")) and c["status"] == "True")
    _, cert = _leaf(kube, namespace, "own")
    assert cert.issuer == ca.cert.subject
    cert.verify_directly_issued_by(ca.cert)


MINIMAL_CERTIFICATE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "certificates.cert-manager.io"},
    "spec": {
        "group": "cert-manager.io",
        "names": {
            "kind": "Certificate",
            "listKind": "CertificateList",
            "plural": "certificates",
            "singular": "certificate",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


def test_cert_manager_issuer(
    tls_operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    tls = {"issuerCertificateAuthority": {"issuerRef": {"name": "ca-issuer", "kind": "ClusterIssuer"}}}
    kube.create(CONNECT_SERVICES, tls_service("cm", namespace, connect_namespace, tls), namespace)
    cond = _accepted(kube, namespace, "cm")
    assert (cond["status"], cond["reason"]) == ("False", "CertManagerNotInstalled")
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    kube.request("POST", crds, MINIMAL_CERTIFICATE_CRD)
    try:
        certificate = wait_for(
            "the cert-manager Certificate",
            lambda: kube.get_or_none(CERTIFICATES, "sc-tls-cm", namespace),
            timeout=60,
        )
        spec = certificate["spec"]
        assert spec["secretName"] == "sc-tls-cm"
        assert spec["dnsNames"] == ["cm", "http"]
        assert spec["uris"] == [f"spiffe://{connect_namespace}/ns/{namespace}/connectservice/cm"]
        assert spec["issuerRef"] == {"name": "ca-issuer", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        assert (spec["duration"], spec["renewBefore"]) == ("168h0m0s", "48h0m0s")
        assert spec["privateKey"]["algorithm"] == "ECDSA"
        assert certificate["metadata"]["ownerReferences"][0]["kind"] == "ConnectService"
        # The pods mount the Secret cert-manager fills (cert-manager cannot run here: it stays empty).
        deployment = wait_for("cm's Deployment", lambda: kube.get_or_none(DEPLOYMENTS, "cm", namespace))
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert any(v.get("secret", {}).get("secretName") == "sc-tls-cm" for v in volumes)
    finally:
        kube.delete(CONNECT_SERVICES, "cm", namespace)
        kube.request("DELETE", f"{crds}/certificates.cert-manager.io")


def test_the_connect_namespace_default_ca(
    tls_operator: OperatorProcess, kube: Kube, namespace: str, ca_ns: str
) -> None:
    ca = new_ca("shop CA", dt.datetime.now(dt.UTC), dt.timedelta(days=30), "ECDSA_P256")
    data = {
        "tls.crt": base64.b64encode(ca.cert_pem).decode(),
        "tls.key": base64.b64encode(ca.key_pem).decode(),
    }
    kube.create(SECRETS, {"metadata": {"name": "shop-ca"}, "type": "kubernetes.io/tls", "data": data}, ca_ns)
    cns = f"cns-{uuid.uuid4().hex[:8]}"
    bad = f"cns-{uuid.uuid4().hex[:8]}"
    for name, ica in ((cns, {"secretName": "shop-ca"}), (bad, {"awsPcaAuthorityArn": "arn:aws:acm-pca:x"})):
        kube.create(
            CONNECT_NAMESPACES,
            {
                "apiVersion": API_VERSION,
                "kind": "ConnectNamespace",
                "metadata": {"name": name},
                "spec": {"tls": {"issuerCertificateAuthority": ica}},
            },
        )
    try:
        kube.create(CONNECT_SERVICES, tls_service("shop", namespace, cns), namespace)
        assert _accepted(kube, namespace, "shop")["status"] == "True"
        _, cert = _leaf(kube, namespace, "shop")
        cert.verify_directly_issued_by(ca.cert)
        # Without a webhook the API server stores the ECS-only default; the operator refuses its services.
        kube.create(CONNECT_SERVICES, tls_service("shop2", namespace, bad), namespace)
        cond = _accepted(kube, namespace, "shop2")
        assert (cond["status"], cond["reason"]) == ("False", "TlsAwsPca")
        assert f"the default CA of ConnectNamespace {bad}" in cond["message"]
    finally:
        for svc in ("shop", "shop2"):
            kube.delete(CONNECT_SERVICES, svc, namespace)
        wait_for(
            "services gone", lambda: not kube.list(CONNECT_SERVICES, namespace, cached=False), timeout=60
        )
        kube.delete(CONNECT_NAMESPACES, cns)
        kube.delete(CONNECT_NAMESPACES, bad)


def test_turning_tls_on_warns_that_clients_keep_their_pins(
    tls_operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    kube.create(CONNECT_SERVICES, service_body("late", namespace, connect_namespace), namespace)
    assert _accepted(kube, namespace, "late")["status"] == "True"
    kube.create(
        CONNECT_SERVICES, service_body("caller", namespace, connect_namespace, serve=False), namespace
    )
    assert _accepted(kube, namespace, "caller")["status"] == "True"
    tls = {
        "serviceConnectConfiguration": tls_service("late", namespace, connect_namespace)["spec"][
            "serviceConnectConfiguration"
        ]
    }
    kube.patch(CONNECT_SERVICES, "late", {"spec": tls}, namespace)

    def warned() -> list[str]:
        events = kube.list(EVENTS, namespace, cached=False)
        return [e["message"] for e in events if e["reason"] == "TlsSwitched"]

    (message,) = wait_for("the TlsSwitched warning", warned)
    assert message.startswith("TLS turned on for late: clients keep what they pinned")
    # The caller pinned the endpoint in plaintext and keeps it until it is redeployed.
    assert "tls" not in _proxy_doc(kube, namespace, "caller")["endpoints"][0]


def test_mutual_tls_lists_the_allowed_callers(
    tls_operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    tls = {"issuerCertificateAuthority": {}, "mutualTls": {"allowedCallers": [{"name": "frontend"}]}}
    kube.create(CONNECT_SERVICES, tls_service("api", namespace, connect_namespace, tls), namespace)
    assert _accepted(kube, namespace, "api")["status"] == "True"
    ingress = _proxy_doc(kube, namespace, "api")["ingress"][0]["tls"]
    assert ingress["clientCaFile"] == f"/var/run/serviceconnect/ca/{connect_namespace}/ca.crt"
    assert ingress["allowedCallers"] == [
        f"spiffe://{connect_namespace}/ns/{namespace}/connectservice/frontend"
    ]
    deployment = wait_for("api's Deployment", lambda: kube.get_or_none(DEPLOYMENTS, "api", namespace))
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("configMap", {}).get("name") == f"sc-ca-{connect_namespace}" for v in volumes)
    # The server needs the bundle in its own namespace to verify callers.
    wait_for("the bundle", lambda: kube.get_or_none(CONFIGMAPS, f"sc-ca-{connect_namespace}", namespace))


def test_a_missing_ca_namespace_refuses_until_it_exists(
    tls_operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    missing = f"sc-ca-late-{uuid.uuid4().hex[:6]}"
    cns = f"cns-{uuid.uuid4().hex[:8]}"
    kube.create(
        CONNECT_NAMESPACES, {"apiVersion": API_VERSION, "kind": "ConnectNamespace", "metadata": {"name": cns}}
    )
    tls_operator.stop()
    saved = dict(tls_operator.env)
    tls_operator.env["SC_CA_NAMESPACE"] = missing
    tls_operator.start()
    try:
        kube.create(CONNECT_SERVICES, tls_service("early", namespace, cns), namespace)
        cond = _accepted(kube, namespace, "early")
        assert (cond["status"], cond["reason"]) == ("False", "CaNamespaceNotFound")
        assert missing in cond["message"]
        assert kube.get_or_none(DEPLOYMENTS, "early", namespace) is None  # refused before any write
        kube.create(NAMESPACES, {"metadata": {"name": missing}})
        wait_for(
            "early accepted", lambda: (c := accepted(kube, namespace, "early")) and c["status"] == "True"
        )
        assert kube.get(SECRETS, f"sc-ca-{cns}", missing)["type"] == "kubernetes.io/tls"
    finally:
        kube.delete(CONNECT_SERVICES, "early", namespace)
        tls_operator.stop()
        tls_operator.env.clear()
        tls_operator.env.update(saved)
        tls_operator.start()
        kube.delete(NAMESPACES, missing)
        kube.delete(CONNECT_NAMESPACES, cns)
