"""Deletion: a service leaves its namespace and its children go (owner references, real garbage
collector); a ConnectNamespace is held while services use it; defaults from the Kubernetes Namespace."""

from __future__ import annotations

import uuid
from typing import Any

from sc_operator import API_VERSION
from sc_operator.kube import (
    CONFIGMAPS,
    CONNECT_DEPLOYMENTS,
    CONNECT_NAMESPACES,
    CONNECT_SERVICES,
    DEPLOYMENTS,
    EVENTS,
    NAMESPACES,
    SERVICES,
    Kube,
)
from support.operator import Kubelet, OperatorProcess, accepted, service_body, wait_for


def children(kube: Kube, namespace: str, name: str) -> dict[str, int]:
    labels = {"serviceconnect.dev/service": name}
    return {
        "deployments": len(kube.list(DEPLOYMENTS, namespace, labels)),
        "connectdeployments": len(kube.list(CONNECT_DEPLOYMENTS, namespace, labels)),
        "configmaps": len(kube.list(CONFIGMAPS, namespace, labels)),
        "services": len(kube.list(SERVICES, namespace, labels)),
    }


def test_deleting_a_service_deregisters_it_and_removes_its_children(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    kube.create(CONNECT_SERVICES, service_body("gone", namespace, connect_namespace), namespace)
    kube.create(CONNECT_SERVICES, service_body("stays", namespace, connect_namespace), namespace)
    for name in ("gone", "stays"):
        assert wait_for(f"{name} judged", lambda n=name: accepted(kube, namespace, n))["status"] == "True"
    assert children(kube, namespace, "gone") == {
        "deployments": 1,
        "connectdeployments": 1,
        "configmaps": 1,
        "services": 1,
    }
    before = kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]

    kube.delete(CONNECT_SERVICES, "gone", namespace)
    wait_for("gone deleted", lambda: kube.get_or_none(CONNECT_SERVICES, "gone", namespace) is None)
    after = kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]
    assert [e["discoveryName"] for e in after["endpoints"]] == ["stays"]
    assert after["serviceCount"] == 1
    assert after["revision"] == before["revision"] + 1
    empty = {"deployments": 0, "connectdeployments": 0, "configmaps": 0, "services": 0}
    wait_for("children collected", lambda: children(kube, namespace, "gone") == empty, timeout=60)
    assert children(kube, namespace, "stays")["deployments"] == 1


def test_a_service_created_again_under_its_name_gets_new_configmap_names(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    """`kubectl delete -f` then `kubectl apply -f` of the same service: the new rollout pins what the
    namespace holds now, so its immutable ConfigMap must not come back under the old name — a kubelet
    that read the old one keeps serving its cached content to new pods (found on a real node)."""
    names: list[str] = []
    for _ in range(2):
        kube.create(CONNECT_SERVICES, service_body("again", namespace, connect_namespace), namespace)
        assert wait_for("again judged", lambda: accepted(kube, namespace, "again"))["status"] == "True"
        (cm,) = wait_for(
            "its ConfigMap",
            lambda: kube.list(CONFIGMAPS, namespace, {"serviceconnect.dev/service": "again"}) or None,
        )
        names.append(cm["metadata"]["name"])
        kube.delete(CONNECT_SERVICES, "again", namespace)
        wait_for("again deleted", lambda: kube.get_or_none(CONNECT_SERVICES, "again", namespace) is None)
        wait_for(
            "its ConfigMap collected",
            lambda: not kube.list(CONFIGMAPS, namespace, {"serviceconnect.dev/service": "again"}),
            timeout=60,
        )
    assert names[0] != names[1], names


def test_connect_namespace_is_held_while_in_use(
    operator: OperatorProcess, kube: Kube, namespace: str, crds_installed: list[str]
) -> None:
    cns = f"held-{uuid.uuid4().hex[:6]}"
    kube.create(
        CONNECT_NAMESPACES, {"apiVersion": API_VERSION, "kind": "ConnectNamespace", "metadata": {"name": cns}}
    )
    # A client-only service holds it too: it uses the namespace without registering an endpoint.
    kube.create(CONNECT_SERVICES, service_body("user", namespace, cns, serve=False), namespace)
    assert wait_for("user judged", lambda: accepted(kube, namespace, "user"))["status"] == "True"

    kube.delete(CONNECT_NAMESPACES, cns)

    def blocked() -> dict[str, Any] | None:
        obj = kube.get(CONNECT_NAMESPACES, cns)
        conds = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Deletable" and c["status"] == "False"), None)

    cond = wait_for("deletion blocked", blocked)
    assert f"{namespace}/user" in cond["message"]

    def blocked_event() -> bool:
        # The Event is posted after the condition is written: wait for it rather than race it.
        events = [e for e in kube.list(EVENTS, "default") if e["involvedObject"].get("name") == cns]
        return any(e["reason"] == "DeletionBlocked" and f"{namespace}/user" in e["message"] for e in events)

    wait_for("DeletionBlocked event", blocked_event)
    assert kube.get_or_none(CONNECT_NAMESPACES, cns) is not None

    kube.delete(CONNECT_SERVICES, "user", namespace)
    wait_for(
        "namespace deleted once unused", lambda: kube.get_or_none(CONNECT_NAMESPACES, cns) is None, timeout=60
    )


def test_default_namespace_from_the_kubernetes_namespace_label(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    kube.create(CONNECT_SERVICES, service_body("defaulted", namespace, None), namespace)
    cond = wait_for("refused for lack of a namespace", lambda: accepted(kube, namespace, "defaulted"))
    assert (cond["status"], cond["reason"]) == ("False", "NamespaceNotSet")
    assert "serviceconnect.dev/default-namespace" in cond["message"]

    kube.patch(
        NAMESPACES,
        namespace,
        {"metadata": {"labels": {"serviceconnect.dev/default-namespace": connect_namespace}}},
    )
    cond = wait_for(
        "accepted once the label names a default",
        lambda: (c := accepted(kube, namespace, "defaulted")) and c["status"] == "True" and c,
    )
    status = kube.get(CONNECT_SERVICES, "defaulted", namespace)["status"]
    assert status["namespace"] == connect_namespace
    registry = kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]
    assert [e["discoveryName"] for e in registry["endpoints"]] == ["defaulted"]


def test_missing_connect_namespace_is_refused_then_accepted_when_created(
    operator: OperatorProcess, kube: Kube, namespace: str, crds_installed: list[str]
) -> None:
    cns = f"later-{uuid.uuid4().hex[:6]}"
    kube.create(CONNECT_SERVICES, service_body("early", namespace, cns), namespace)
    cond = wait_for("refused", lambda: accepted(kube, namespace, "early"))
    assert (cond["status"], cond["reason"]) == ("False", "NamespaceNotFound")
    assert kube.get_or_none(CONNECT_NAMESPACES, cns) is None  # not created behind the user's back
    assert kube.get_or_none(DEPLOYMENTS, "early", namespace) is None

    kube.create(
        CONNECT_NAMESPACES, {"apiVersion": API_VERSION, "kind": "ConnectNamespace", "metadata": {"name": cns}}
    )
    wait_for(
        "accepted once the namespace exists",
        lambda: (c := accepted(kube, namespace, "early")) and c["status"] == "True",
    )
    assert kube.get_or_none(DEPLOYMENTS, "early", namespace) is not None
    kube.delete(CONNECT_SERVICES, "early", namespace)
    wait_for("early deleted", lambda: kube.get_or_none(CONNECT_SERVICES, "early", namespace) is None)
    kube.delete(CONNECT_NAMESPACES, cns)
