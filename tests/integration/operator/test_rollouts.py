"""Rollouts as ECS deployments: endpoint pinning, scaling without a new deployment.

Pods become Ready only because the test (playing the kubelet) says so through the status subresource.
"""

from __future__ import annotations

import json
from typing import Any

from sc_operator.kube import CONFIGMAPS, CONNECT_DEPLOYMENTS, CONNECT_SERVICES, DEPLOYMENTS, Kube
from support.operator import Kubelet, OperatorProcess, accepted, service_body, wait_for


def rollouts(kube: Kube, namespace: str, service: str) -> list[dict[str, Any]]:
    cds = kube.list(CONNECT_DEPLOYMENTS, namespace, {"serviceconnect.dev/service": service})
    return sorted(cds, key=lambda c: int(c["metadata"]["annotations"]["serviceconnect.dev/sequence"]))


def wait_completed(kube: Kube, kubelet: Kubelet, namespace: str, service: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        kubelet.ready_all({"serviceconnect.dev/service": service})
        cds = rollouts(kube, namespace, service)
        last = cds[-1].get("status") or {}
        return cds[-1] if last.get("rolloutState") == "COMPLETED" else None

    return wait_for(f"{service} rollout COMPLETED", done, timeout=60)


def pinned_names(kube: Kube, namespace: str, cd: dict[str, Any]) -> list[str]:
    cm = kube.get(CONFIGMAPS, cd["metadata"]["name"], namespace)
    config = json.loads(next(iter(cm["data"].values())))
    return sorted(e["name"] for e in config.get("endpoints") or [])


def test_pinning_new_endpoints_reach_only_redeployed_clients(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    kube.create(CONNECT_SERVICES, service_body("orders", namespace, connect_namespace), namespace)
    wait_completed(kube, kubelet, namespace, "orders")
    kube.create(CONNECT_SERVICES, service_body("web", namespace, connect_namespace, serve=False), namespace)
    first = wait_completed(kube, kubelet, namespace, "web")
    first_cm = kube.get(CONFIGMAPS, first["metadata"]["name"], namespace)
    assert [e["discoveryName"] for e in first["spec"]["endpoints"]] == ["orders"]

    # A new server endpoint appears in the namespace.
    kube.create(CONNECT_SERVICES, service_body("payments", namespace, connect_namespace), namespace)
    wait_completed(kube, kubelet, namespace, "payments")
    # The running client keeps its rollout and its ConfigMap, byte for byte.
    assert [c["metadata"]["name"] for c in rollouts(kube, namespace, "web")] == [first["metadata"]["name"]]
    again = kube.get(CONFIGMAPS, first["metadata"]["name"], namespace)
    assert again["data"] == first_cm["data"]
    assert again["metadata"]["resourceVersion"] == first_cm["metadata"]["resourceVersion"]

    # Changing the client (a new image) is a new deployment, which pins the namespace as it is now.
    containers = kube.get(CONNECT_SERVICES, "web", namespace)["spec"]["taskDefinition"][
        "containerDefinitions"
    ]
    containers[0]["image"] = "registry.example/app:2"
    # A merge patch, as kubectl sends: the operator writes the service's status meanwhile, so a PUT of
    # what was read would race it for the resourceVersion.
    kube.patch(
        CONNECT_SERVICES, "web", {"spec": {"taskDefinition": {"containerDefinitions": containers}}}, namespace
    )
    second = wait_for(
        "a second web rollout", lambda: (cds := rollouts(kube, namespace, "web"))[1:] and cds[-1]
    )
    assert [e["discoveryName"] for e in second["spec"]["endpoints"]] == ["orders", "payments"]

    # The ConnectDeployment is created before the Deployment is re-rendered from it: wait for both.
    def pinned_hosts() -> list[str]:
        template = kube.get(DEPLOYMENTS, "web", namespace)["spec"]["template"]
        return sorted(h for a in template["spec"]["hostAliases"] for h in a["hostnames"])

    wait_for("the web Deployment re-rendered", lambda: pinned_hosts() == ["orders", "payments"])
    assert pinned_names(kube, namespace, first) == ["orders"]
    assert pinned_names(kube, namespace, second) == ["orders", "payments"]

    # Kubernetes replaces the pods (the real ReplicaSet controller); the old deployment drains.
    wait_completed(kube, kubelet, namespace, "web")
    old = wait_for(
        "the old rollout INACTIVE",
        lambda: (
            (cd := kube.get(CONNECT_DEPLOYMENTS, first["metadata"]["name"], namespace))["status"]["status"]
            == "INACTIVE"
            and cd
        ),
    )
    assert old["status"]["rolloutState"] == "COMPLETED"
    # The service's summary is written just after its ConnectDeployments' own statuses.
    expected = [(second["metadata"]["name"], "PRIMARY"), (first["metadata"]["name"], "INACTIVE")]
    wait_for(
        "the service's summary: new PRIMARY, old INACTIVE",
        lambda: (
            [
                (d["name"], d["status"])
                for d in kube.get(CONNECT_SERVICES, "web", namespace)["status"]["deployments"]
            ]
            == expected
        ),
    )


def test_desired_count_alone_scales_without_a_new_deployment(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    kube.create(CONNECT_SERVICES, service_body("cart", namespace, connect_namespace), namespace)
    first = wait_completed(kube, kubelet, namespace, "cart")
    template_before = kube.get(DEPLOYMENTS, "cart", namespace)["spec"]["template"]

    kube.patch(CONNECT_SERVICES, "cart", {"spec": {"desiredCount": 3}}, namespace)
    wait_for("replicas 3", lambda: kube.get(DEPLOYMENTS, "cart", namespace)["spec"]["replicas"] == 3)
    wait_for("3 pods", lambda: len(kubelet.pods({"serviceconnect.dev/service": "cart"})) == 3)
    kubelet.ready_all({"serviceconnect.dev/service": "cart"})
    status = wait_for(
        "3 running",
        lambda: (s := kube.get(CONNECT_SERVICES, "cart", namespace)["status"])["runningCount"] == 3 and s,
    )
    assert [c["metadata"]["name"] for c in rollouts(kube, namespace, "cart")] == [first["metadata"]["name"]]
    assert kube.get(DEPLOYMENTS, "cart", namespace)["spec"]["template"] == template_before
    assert status["desiredCount"] == 3
    assert accepted(kube, namespace, "cart")["status"] == "True"  # type: ignore[index]


def test_first_status_of_a_rollout_comes_with_its_tasks(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    """A ConnectDeployment's status is first written by the status refresh (its first pod event; for a
    service of zero tasks, at once): ECS's view, with createdAt, in the service's summary too."""
    kube.create(CONNECT_SERVICES, service_body("idle", namespace, connect_namespace, desired=0), namespace)
    idle = wait_for(
        "the zero-task rollout COMPLETED",
        lambda: (
            (cds := rollouts(kube, namespace, "idle"))
            and (cds[-1].get("status") or {}).get("rolloutState") == "COMPLETED"
            and cds[-1]
        ),
    )
    assert idle["status"]["status"] == "PRIMARY"
    assert idle["status"]["createdAt"] == idle["metadata"]["creationTimestamp"]

    kube.create(CONNECT_SERVICES, service_body("busy", namespace, connect_namespace), namespace)
    pending = wait_for(
        "busy's rollout with a pending task",
        lambda: (
            (cds := rollouts(kube, namespace, "busy"))
            and (cds[-1].get("status") or {}).get("pendingCount") == 1
            and cds[-1]
        ),
    )
    assert (pending["status"]["status"], pending["status"]["rolloutState"]) == ("PRIMARY", "IN_PROGRESS")
    assert pending["status"]["createdAt"] == pending["metadata"]["creationTimestamp"]
    done = wait_completed(kube, kubelet, namespace, "busy")
    assert done["status"]["createdAt"] == pending["status"]["createdAt"]
    summary = kube.get(CONNECT_SERVICES, "busy", namespace)["status"]["deployments"]
    assert [(d["name"], d["createdAt"]) for d in summary] == [
        (done["metadata"]["name"], done["metadata"]["creationTimestamp"])
    ]
