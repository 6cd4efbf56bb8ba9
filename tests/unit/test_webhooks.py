"""Admission decisions as pure functions: same rules and messages as reconcile-time validation.

The ConnectService cases start from the tutorial's nginx service (examples/10-nginx.yaml) and break
one ECS rule each; the pod cases build the owner chain a real Deployment produces.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from sc_operator import webhooks
from sc_operator.validation import DEPLOYMENT_CONTROLLER_MESSAGE, STANDALONE_TASK_MESSAGE, validate_service
from sc_operator.webhooks import (
    FORBIDDEN,
    INVALID,
    WebhookSettings,
    WebhookSettingsError,
    owner_chain,
    review_connect_namespace,
    review_connect_service,
    review_pod,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def nginx() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "10-nginx.yaml").read_text())
    return doc


def test_the_tutorial_service_is_admitted(nginx: dict[str, Any]) -> None:
    assert review_connect_service(nginx) == webhooks.ALLOW


@pytest.mark.parametrize("controller", ["CODE_DEPLOY", "EXTERNAL"])
def test_blue_green_controllers_are_refused_with_the_ecs_message(
    nginx: dict[str, Any], controller: str
) -> None:
    nginx["spec"]["deploymentController"] = {"type": controller}
    verdict = review_connect_service(nginx)
    assert not verdict.allowed
    assert verdict.code == INVALID
    assert DEPLOYMENT_CONTROLLER_MESSAGE in verdict.message
    assert verdict.message.startswith("ConnectService tutorial/service-connect-nginx-service is invalid: ")
    assert "spec.deploymentController" in verdict.message


def test_refusal_is_exactly_what_reconciliation_reports(nginx: dict[str, Any]) -> None:
    # One implementation, two callers: the webhook's violations are validate_service's, all of them.
    broken = copy.deepcopy(nginx)
    broken["spec"]["deploymentController"] = {"type": "CODE_DEPLOY"}
    del broken["spec"]["taskDefinition"]["memory"]
    broken["spec"]["serviceConnectConfiguration"]["services"][0]["portName"] = "web"
    verdict = review_connect_service(broken)
    assert list(verdict.violations) == validate_service(broken)
    assert {v.rule for v in verdict.violations} >= {
        "deployment-controller",
        "task-memory-required",
        "port-name-unknown",
    }
    for violation in verdict.violations:
        assert str(violation) in verdict.message


def test_schema_errors_name_the_field(nginx: dict[str, Any]) -> None:
    nginx["spec"]["serviceConnectConfiguration"]["services"][0]["clientAliases"][0]["port"] = 70000
    verdict = review_connect_service(nginx)
    assert not verdict.allowed
    assert "spec.serviceConnectConfiguration.services[0].clientAliases[0].port" in verdict.message
    assert "[port-range]" in verdict.message


def test_connect_namespace_spec_is_checked() -> None:
    ok = {"apiVersion": "serviceconnect.dev/v1alpha1", "kind": "ConnectNamespace", "metadata": {"name": "sc"}}
    assert review_connect_namespace(ok).allowed
    assert review_connect_namespace({**ok, "spec": {"description": "the tutorial"}}).allowed
    verdict = review_connect_namespace({**ok, "spec": {"description": "x" * 1025}})
    assert not verdict.allowed
    assert verdict.message.startswith("ConnectNamespace sc is invalid: spec.description")
    unknown = review_connect_namespace({**ok, "spec": {"arn": "arn:aws:servicediscovery:..."}})
    assert not unknown.allowed
    assert "spec.arn" in unknown.message


# -- pods ---------------------------------------------------------------------------------------------


def _ref(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


def _chain() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A task pod as the ReplicaSet controller creates it, its ReplicaSet and its Deployment."""
    deployment = {
        "metadata": {
            "name": "nginx",
            "namespace": "tutorial",
            "uid": "d-1",
            "ownerReferences": [_ref("serviceconnect.dev/v1alpha1", "ConnectService", "nginx", "cs-1")],
        }
    }
    replicaset = {
        "metadata": {
            "name": "nginx-5d4f",
            "namespace": "tutorial",
            "uid": "rs-1",
            "ownerReferences": [_ref("apps/v1", "Deployment", "nginx", "d-1")],
        }
    }
    pod = {
        "metadata": {
            "name": "nginx-5d4f-abcde",
            "namespace": "tutorial",
            "labels": {"serviceconnect.dev/service": "nginx"},
            "ownerReferences": [_ref("apps/v1", "ReplicaSet", "nginx-5d4f", "rs-1")],
        }
    }
    return pod, replicaset, deployment


def test_a_task_of_a_connect_service_is_admitted() -> None:
    pod, rs, deploy = _chain()
    assert review_pod(pod, rs, deploy).allowed


def test_a_pod_that_does_not_ask_is_never_refused() -> None:
    assert review_pod({"metadata": {"name": "plain", "labels": {"app": "x"}}}).allowed


@pytest.mark.parametrize("where", ["labels", "annotations"])
def test_a_standalone_pod_asking_for_service_connect_is_refused(where: str) -> None:
    pod = {
        "metadata": {"name": "lonely", "namespace": "tutorial", where: {"serviceconnect.dev/service": "x"}}
    }
    verdict = review_pod(pod)
    assert not verdict.allowed
    assert verdict.code == FORBIDDEN
    assert STANDALONE_TASK_MESSAGE in verdict.message
    assert verdict.violations[0].rule == "standalone-task"


def test_a_pod_of_a_plain_deployment_is_refused() -> None:
    pod, rs, deploy = _chain()
    deploy["metadata"]["ownerReferences"] = []
    verdict = review_pod(pod, rs, deploy)
    assert not verdict.allowed
    assert "was not created for a ConnectService" in verdict.message


def test_a_pod_of_a_bare_replicaset_is_refused() -> None:
    pod, rs, _ = _chain()
    rs["metadata"]["ownerReferences"] = []
    assert "belongs to no Deployment" in review_pod(pod, rs, None).message


def test_a_forged_owner_reference_is_refused() -> None:
    pod, rs, deploy = _chain()
    pod["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    assert not review_pod(pod, rs, deploy).allowed
    assert "does not exist" in review_pod(pod, None, None).message


def test_owner_chain_fetches_only_what_the_decision_needs() -> None:
    pod, rs, deploy = _chain()
    store = {("replicasets", "nginx-5d4f"): rs, ("deployments", "nginx"): deploy}
    calls: list[tuple[str, str, str]] = []

    def get(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        calls.append((kind, name, namespace))
        return store.get((kind, name))

    assert owner_chain(pod, "tutorial", get) == (rs, deploy)
    assert calls == [("replicasets", "nginx-5d4f", "tutorial"), ("deployments", "nginx", "tutorial")]
    calls.clear()
    assert owner_chain({"metadata": {"name": "plain"}}, "tutorial", get) == (None, None)
    assert calls == []


# -- settings and registration ------------------------------------------------------------------------


def test_settings_from_the_chart_environment() -> None:
    s = WebhookSettings.from_env(
        {
            "SERVICECONNECT_WEBHOOK_ENABLED": "true",
            "SERVICECONNECT_WEBHOOK_PORT": "8443",
            "SERVICECONNECT_WEBHOOK_CERT_DIR": "/etc/serviceconnect/webhook-tls",
            "SERVICECONNECT_WEBHOOK_EXCLUDE_NAMESPACES": "sc-system, kube-system",
            "POD_NAMESPACE": "operators",
        }
    )
    assert s.enabled
    assert s.port == 8443
    assert s.cert_dir == Path("/etc/serviceconnect/webhook-tls")
    assert s.exclude_namespaces == {"sc-system", "kube-system", "operators"}
    assert s.excludes({"metadata": {"namespace": "kube-system"}})
    assert not s.excludes({"metadata": {"namespace": "tutorial"}})
    assert not WebhookSettings.from_env({}).enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVICECONNECT_WEBHOOK_PORT": "https"}, "SERVICECONNECT_WEBHOOK_PORT: must be a port number"),
        ({"SERVICECONNECT_WEBHOOK_PORT": "0"}, "SERVICECONNECT_WEBHOOK_PORT: must be 1-65535"),
        (
            {"SERVICECONNECT_WEBHOOK_ENABLED": "maybe"},
            "SERVICECONNECT_WEBHOOK_ENABLED: must be true or false",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookSettingsError, match=message):
        WebhookSettings.from_env(env)


def _validating_ids(registry: kopf.OperatorRegistry) -> set[str]:
    return {h.id for h in registry._webhooks.get_all_handlers()}


def test_handlers_register_only_when_enabled() -> None:
    off = kopf.OperatorRegistry()
    webhooks.register_from_environment({}, off)
    assert _validating_ids(off) == set()
    on = kopf.OperatorRegistry()
    webhooks.register_from_environment({"SERVICECONNECT_WEBHOOK_ENABLED": "true"}, on)
    # The ids are the URL paths in the chart's ValidatingWebhookConfiguration (test_chart checks those).
    assert _validating_ids(on) == set(webhooks.HOOK_IDS)
    assert len(on._activities.get_all_handlers()) == 1  # the startup handler configuring the server


def test_chart_paths_are_the_handler_ids() -> None:
    template = (REPO / "charts" / "service-connect" / "templates" / "webhook.yaml").read_text()
    for hook_id in webhooks.HOOK_IDS:
        assert f'"id" "{hook_id}"' in template


# -- cross-object rules ------------------------------------------------------------------------------


def _cns(name: str, holder: tuple[str, str], discovery: str = "nginx", dns: str = "nginx") -> dict[str, Any]:
    """A ConnectNamespace whose registry (status) holds one endpoint of `holder`."""
    ns, svc = holder
    endpoint = {
        "discoveryName": discovery,
        "dnsName": dns,
        "port": 80,
        "service": {"namespace": ns, "name": svc},
    }
    return {
        "metadata": {"name": name},
        "status": {
            "endpoints": [endpoint],
            "services": [{"namespace": ns, "name": svc, "tasks": 1}],
            "revision": 1,
        },
    }


def test_a_discovery_name_taken_in_the_namespace_is_refused(nginx: dict[str, Any]) -> None:
    registry = [_cns("service-connect", ("other", "web"))]
    verdict = webhooks.review_registration(nginx, {}, registry)
    assert not verdict.allowed
    rules = [v.rule for v in verdict.violations]
    assert rules == ["discovery-name-duplicate", "client-alias-duplicate"]
    assert "'nginx' is already registered in 'service-connect' by other/web" in verdict.message


def test_re_admitting_the_holder_itself_is_quiet(nginx: dict[str, Any]) -> None:
    registry = [_cns("service-connect", ("tutorial", "service-connect-nginx-service"))]
    assert webhooks.review_registration(nginx, {}, registry).allowed


def test_a_service_cannot_join_a_second_namespace(nginx: dict[str, Any]) -> None:
    registry = [
        _cns("service-connect", ("other", "web"), discovery="web", dns="web"),
        _cns("legacy", ("tutorial", "service-connect-nginx-service"), discovery="old", dns="old"),
    ]
    verdict = webhooks.review_registration(nginx, {}, registry)
    assert [v.rule for v in verdict.violations] == ["one-namespace"]


def test_what_may_resolve_itself_is_left_to_reconciliation(nginx: dict[str, Any]) -> None:
    # The ConnectNamespace may be created right after the service (kubectl apply -f dir/).
    assert webhooks.review_registration(nginx, {}, []).allowed
    # No namespace in the spec and no default label: reconciliation refuses and retries on a label change.
    del nginx["spec"]["serviceConnectConfiguration"]["namespace"]
    assert webhooks.review_registration(nginx, {}, [_cns("service-connect", ("other", "web"))]).allowed


def test_the_namespace_label_names_the_default_connect_namespace(nginx: dict[str, Any]) -> None:
    from sc_operator.reconcile.context import DEFAULT_NAMESPACE_LABEL

    del nginx["spec"]["serviceConnectConfiguration"]["namespace"]
    registry = [_cns("service-connect", ("other", "web"))]
    verdict = webhooks.review_registration(nginx, {DEFAULT_NAMESPACE_LABEL: "service-connect"}, registry)
    assert not verdict.allowed
    assert verdict.violations[0].rule == "discovery-name-duplicate"


def test_connect_namespace_default_ca_from_aws_is_refused() -> None:
    obj = {
        "metadata": {"name": "shop"},
        "spec": {"tls": {"issuerCertificateAuthority": {"awsPcaAuthorityArn": "arn:aws:acm-pca:x"}}},
    }
    verdict = webhooks.review_connect_namespace(obj)
    assert not verdict.allowed
    assert "spec.tls.issuerCertificateAuthority.awsPcaAuthorityArn: [tls-aws-pca]" in verdict.message
    obj["spec"] = {"tls": {"issuerCertificateAuthority": {"secretName": "shop-ca"}}}
    assert webhooks.review_connect_namespace(obj).allowed
