"""The Helm chart rendered by the real helm: lint, schemas, and what each value changes.

Every value set in charts/service-connect/ci/ plus the defaults is rendered and each manifest is
validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are
errors). Server-side checks against a real API server are in tests/integration/chart/.
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sc_operator import crdgen
from sc_operator.api import KINDS
from sc_operator.settings import OperatorSettings
from support.envtest import Unavailable, find_tools
from support.gate import unavailable
from support.helmchart import (
    CHART,
    VALUES_SETS,
    Helm,
    HelmError,
    by_kind,
    one,
    operator_container,
    plain_env,
)

# Kinds the Kubernetes schemas do not describe: cert-manager's and kopf's own.
FOREIGN_KINDS = {"Certificate", "Issuer", "ClusterKopfPeering"}
# The oldest API the chart supports is 1.20 (kubeVersion); 1.25 is the oldest schema set shipped.
SCHEMA_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def helm() -> Helm:
    try:
        return Helm(find_tools() / "helm")
    except Unavailable as exc:
        unavailable(f"no helm: {exc}")


@pytest.fixture(scope="module")
def default(helm: Helm) -> list[dict[str, Any]]:
    return helm.template()


@pytest.mark.parametrize("values", VALUES_SETS.values(), ids=VALUES_SETS.keys())
def test_helm_lint_is_clean(helm: Helm, values: Path | None) -> None:
    out = helm.run("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out, out
    assert "[ERROR]" not in out, out


@pytest.mark.parametrize("values", VALUES_SETS.values(), ids=VALUES_SETS.keys())
def test_every_manifest_matches_the_kubernetes_schemas(helm: Helm, values: Path | None) -> None:
    docs = helm.template(values, include_crds=True)
    checked = 0
    for doc in docs:
        if doc["kind"] in FOREIGN_KINDS:
            continue
        for version in SCHEMA_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = f"{doc['kind']}/{doc['metadata']['name']}"
                pytest.fail(f"{name} invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 2  # the minimal install still has a Deployment and the kopf peering CRD


def test_default_install_renders_every_piece(default: list[dict[str, Any]]) -> None:
    kinds = sorted({d["kind"] for d in default})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Secret",
        "Service",
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    ]
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
    }
    for doc in default:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"].get("namespace") == "sc-system", doc["kind"]


def test_chart_crds_are_the_generated_ones(default: list[dict[str, Any]]) -> None:
    files = CHART / "files" / "crds"
    for name, text in crdgen.crd_files().items():
        path = files / name
        assert path.exists(), f"{path.relative_to(CHART)} missing: run hack/gen-crds"
        assert path.read_text() == text, f"{path.relative_to(CHART)} out of date: run hack/gen-crds"
    assert {p.name for p in files.glob("*.yaml")} == set(crdgen.crd_files())
    rendered = {d["metadata"]["name"]: d for d in by_kind(default, "CustomResourceDefinition")}
    assert set(rendered) == {k.crd_name for k in KINDS}
    for kind in KINDS:
        # What the chart installs is exactly the generated spec; it only adds labels/annotations.
        assert rendered[kind.crd_name]["spec"] == crdgen.crd(kind)["spec"], kind.kind
        assert rendered[kind.crd_name]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_crds_can_be_left_out_and_not_kept(helm: Helm) -> None:
    assert not by_kind(helm.template(sets={"crds": {"install": False}}), "CustomResourceDefinition")
    docs = helm.template(sets={"crds.keep": False})
    assert all("annotations" not in d["metadata"] for d in by_kind(docs, "CustomResourceDefinition"))


def test_operator_settings_accept_what_the_chart_passes(helm: Helm) -> None:
    # The operator refuses unknown or malformed SC_* variables at start-up; the chart must only pass
    # what sc_operator.settings understands, in its format.
    for values in VALUES_SETS.values():
        env = plain_env(operator_container(helm.template(values)))
        settings = OperatorSettings.load(env)
        assert settings.proxy_image == env["SC_PROXY_IMAGE"]
    custom = plain_env(operator_container(helm.template(VALUES_SETS["custom-values"])))
    settings = OperatorSettings.load(custom)
    assert settings.proxy_image == "registry.example.com/sc-proxy:1.2.3"
    assert settings.proxy_image_pull_policy == "Always"
    assert settings.proxy_resources == {
        "requests": {"cpu": "250m", "memory": "96Mi"},
        "limits": {"memory": "192Mi"},
    }
    assert settings.proxy_sizing.cpu_units == 512
    assert settings.proxy_sizing.memory_limit_factor == 3
    assert settings.interception == "listeners"
    assert settings.cluster_domain == "k8s.example"


def test_proxy_image_defaults_to_the_app_version(default: list[dict[str, Any]]) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    env = plain_env(operator_container(default))
    assert env["SC_PROXY_IMAGE"] == f"ghcr.io/serviceconnect/sc-proxy:{chart['appVersion']}"
    assert operator_container(default)["image"] == f"ghcr.io/serviceconnect/sc-operator:{chart['appVersion']}"
    assert "SC_PROXY_RESOURCES" not in env  # the sizing rules apply unless resources are given


def test_one_replica_with_recreate_by_default(default: list[dict[str, Any]]) -> None:
    spec = one(default, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    args = operator_container(default)["args"]
    assert "--standalone" in args
    assert not any(a.startswith("--peering") for a in args)


def test_ha_runs_replicas_under_kopf_peering(helm: Helm) -> None:
    docs = helm.template(VALUES_SETS["ha-values"], include_crds=True)
    spec = one(docs, "Deployment")["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["type"] == "RollingUpdate"
    args = operator_container(docs)["args"]
    assert "--peering=sc-ha" in args
    assert "--standalone" not in args
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "sc-ha"
    crd = next(d for d in by_kind(docs, "CustomResourceDefinition") if d["spec"]["group"] == "kopf.dev")
    assert crd["spec"]["names"]["plural"] == "clusterkopfpeerings"
    rules = one(docs, "ClusterRole")["rules"]
    assert any("clusterkopfpeerings" in r["resources"] for r in rules)


def test_replicas_without_peering_are_refused_with_the_reason(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"operator.replicas > 1 needs operator.peering.enabled=true"):
        helm.template(sets={"operator.replicas": 2})


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("webhook.timeoutSeconds", 31, "/webhook/timeoutSeconds"),
        ("webhook.failurePolicy.pods", "Sometimes", "/webhook/failurePolicy/pods"),
        ("proxy.interception", "tproxy", "/proxy/interception"),
        ("operator.replica", 1, "additional properties 'replica' not allowed"),
    ],
)
def test_values_schema_names_the_bad_field(helm: Helm, key: str, value: Any, field: str) -> None:
    with pytest.raises(HelmError, match="values don't meet the specifications of the schema") as err:
        helm.template(sets={key: value})
    assert field in str(err.value)


def _hooks(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    config = one(docs, "ValidatingWebhookConfiguration")
    return {h["name"].split(".", 1)[0]: h for h in config["webhooks"]}


def test_webhooks_fail_closed_for_custom_resources_and_open_for_pods(default: list[dict[str, Any]]) -> None:
    hooks = _hooks(default)
    assert set(hooks) == {"validate-connectservice", "validate-connectnamespace", "validate-pod"}
    assert hooks["validate-connectservice"]["failurePolicy"] == "Fail"
    assert hooks["validate-connectnamespace"]["failurePolicy"] == "Fail"
    assert hooks["validate-pod"]["failurePolicy"] == "Ignore"
    assert hooks["validate-pod"]["rules"][0]["operations"] == ["CREATE"]
    for hook in hooks.values():
        assert hook["timeoutSeconds"] == 10
        assert hook["sideEffects"] == "None"
        assert hook["clientConfig"]["service"]["path"] == "/" + hook["name"].split(".", 1)[0]


def test_webhook_values_reach_the_configuration(helm: Helm) -> None:
    hooks = _hooks(helm.template(VALUES_SETS["custom-values"]))
    assert hooks["validate-pod"]["failurePolicy"] == "Fail"
    assert {h["timeoutSeconds"] for h in hooks.values()} == {5}
    excluded = hooks["validate-pod"]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert excluded == ["sc-system", "kube-system", "monitoring"]


def test_webhooks_skip_the_operator_namespace_and_its_pods(default: list[dict[str, Any]]) -> None:
    pod_labels = one(default, "Deployment")["spec"]["template"]["metadata"]["labels"]
    env = plain_env(operator_container(default))
    for hook in _hooks(default).values():
        (expr,) = hook["objectSelector"]["matchExpressions"]
        # The operator's own pods carry the label the selector excludes.
        assert expr["operator"] == "DoesNotExist"
        assert expr["key"] in pod_labels
        if "namespaceSelector" in hook:
            assert "sc-system" in hook["namespaceSelector"]["matchExpressions"][0]["values"]
    # The operator skips the same namespaces itself (the name label needs Kubernetes 1.21+).
    assert env["SERVICECONNECT_WEBHOOK_EXCLUDE_NAMESPACES"].split(",")[0] == "sc-system"


def _cert(b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(b64))


def test_generated_certificate_is_signed_by_the_ca_in_the_configuration(
    default: list[dict[str, Any]],
) -> None:
    secret = one(default, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    ca, leaf = _cert(secret["data"]["ca.crt"]), _cert(secret["data"]["tls.crt"])
    ca_key = ca.public_key()
    assert isinstance(ca_key, rsa.RSAPublicKey)
    assert leaf.signature_hash_algorithm is not None
    ca_key.verify(
        leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), leaf.signature_hash_algorithm
    )
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    service = one(default, "Service")["metadata"]["name"]
    assert f"{service}.sc-system.svc" in sans
    assert leaf.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)
    for hook in _hooks(default).values():
        assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        assert hook["clientConfig"]["service"]["name"] == service
    # The key in the Secret belongs to the certificate.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(base64.b64decode(secret["data"]["tls.key"]), password=None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()  # type: ignore[union-attr]


def test_cert_manager_replaces_the_generated_certificate(helm: Helm) -> None:
    docs = helm.template(VALUES_SETS["ha-values"])
    assert not by_kind(docs, "Secret")
    assert not by_kind(docs, "Issuer")  # an issuerRef is given
    cert = one(docs, "Certificate")
    assert cert["spec"]["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer"}
    config = one(docs, "ValidatingWebhookConfiguration")
    assert (
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == f"sc-system/{cert['metadata']['name']}"
    )
    assert all("caBundle" not in h["clientConfig"] for h in config["webhooks"])
    secret_volume = next(
        v
        for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "webhook-tls"
    )
    assert secret_volume["secret"]["secretName"] == cert["spec"]["secretName"]
    self_signed = helm.template(sets={"webhook.certManager.enabled": True})
    assert one(self_signed, "Issuer")["spec"] == {"selfSigned": {}}


def test_minimal_install_has_only_the_operator(helm: Helm) -> None:
    docs = helm.template(VALUES_SETS["minimal-values"])
    assert sorted(d["kind"] for d in docs) == ["Deployment"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "existing-operator"
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert plain_env(operator_container(docs))["SERVICECONNECT_WEBHOOK_ENABLED"] == "false"


def test_operator_pod_is_locked_down(default: list[dict[str, Any]]) -> None:
    pod = one(default, "Deployment")["spec"]["template"]["spec"]
    container = operator_container(default)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_rbac_grants_no_wildcards_and_secrets_only_for_issuance(default: list[dict[str, Any]]) -> None:
    role = one(default, "ClusterRole")
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        if "secrets" in rule["resources"]:
            # TLS issuance reads CA Secrets by name and writes leaves; it never lists, watches or deletes.
            assert (rule["resources"], rule["verbs"]) == (["secrets"], ["get", "create", "update"])
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
    assert not [r for r in role["rules"] if "cert-manager.io" in r["apiGroups"]]
    binding = one(default, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": one(default, "ServiceAccount")["metadata"]["name"],
            "namespace": "sc-system",
        }
    ]


def test_notes_say_what_was_installed(helm: Helm) -> None:
    out = helm.run(
        "install", "sc", str(CHART), "--dry-run=client", "--namespace", "sc-system", "--hide-notes=false"
    )
    assert "Webhooks:   on (custom resources: failurePolicy Fail; pods: Ignore" in out
    assert "rollout status deployment/sc-service-connect" in out


def test_tls_settings_and_cert_manager_rbac(helm: Helm) -> None:
    docs = helm.template(
        sets={
            "tls": {"certManager": {"enabled": True}, "renewBeforeSeconds": 3600, "keyAlgorithm": "RSA_2048"}
        }
    )
    env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
    assert env["SC_TLS_RENEW_BEFORE_SECONDS"] == "3600"
    assert env["SC_TLS_CERTIFICATE_VALIDITY_SECONDS"] == "604800"
    assert env["SC_TLS_KEY_ALGORITHM"] == "RSA_2048"
    rules = [r for r in one(docs, "ClusterRole")["rules"] if "cert-manager.io" in r["apiGroups"]]
    assert rules == [
        {
            "apiGroups": ["cert-manager.io"],
            "resources": ["certificates"],
            "verbs": ["get", "create", "update"],
        }
    ]


def test_gateway_values_reach_the_operator(helm: Helm, default: list[dict[str, Any]]) -> None:
    assert not OperatorSettings.load(plain_env(operator_container(default))).gateway_enabled
    sets = {
        "gateway.enabled": True,
        "gateway.port": 16443,
        "gateway.replicas": 3,
        "gateway.serviceType": "NodePort",
    }
    settings = OperatorSettings.load(plain_env(operator_container(helm.template(sets=sets))))
    assert settings.gateway_enabled
    assert (settings.gateway_port, settings.gateway_replicas, settings.gateway_service_type) == (
        16443,
        3,
        "NodePort",
    )
