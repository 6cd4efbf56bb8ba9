"""The deployment circuit breaker, with and without rollback.

Task failures are simulated as the kubelet would report a crash-looping container: the test writes
``restartCount`` into the pods' status subresource. ECS's threshold for desiredCount 2 is 3 failed tasks.
"""

from __future__ import annotations

from typing import Any

from sc_operator.kube import CONNECT_DEPLOYMENTS, CONNECT_SERVICES, DEPLOYMENTS, Kube
from support.operator import Kubelet, OperatorProcess, service_body, wait_for


def rollouts(kube: Kube, namespace: str, service: str) -> list[dict[str, Any]]:
    cds = kube.list(CONNECT_DEPLOYMENTS, namespace, {"serviceconnect.dev/service": service})
    return sorted(cds, key=lambda c: int(c["metadata"]["annotations"]["serviceconnect.dev/sequence"]))


def state(cd: dict[str, Any]) -> str | None:
    return (cd.get("status") or {}).get("rolloutState")


def complete_first(kube: Kube, kubelet: Kubelet, namespace: str, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        kubelet.ready_all({"serviceconnect.dev/service": name})
        cds = rollouts(kube, namespace, name)
        return cds[0] if cds and state(cds[0]) == "COMPLETED" else None

    return wait_for(f"{name} first rollout COMPLETED", done, timeout=60)


def update_image(kube: Kube, namespace: str, name: str, image: str) -> dict[str, Any]:
    containers = kube.get(CONNECT_SERVICES, name, namespace)["spec"]["taskDefinition"]["containerDefinitions"]
    containers[0]["image"] = image
    # A merge patch, as kubectl sends: a PUT of what was read races the operator's status writes.
    kube.patch(
        CONNECT_SERVICES, name, {"spec": {"taskDefinition": {"containerDefinitions": containers}}}, namespace
    )
    return wait_for("a second rollout", lambda: (cds := rollouts(kube, namespace, name))[1:] and cds[1])


def crash_new_pods(kube: Kube, kubelet: Kubelet, namespace: str, name: str, cd_name: str) -> None:
    """Every pod of the new rollout crash-loops (2 restarts each: 2 pods reach the threshold of 3)."""

    def crashed() -> bool:
        pods = kubelet.pods({"serviceconnect.dev/deployment": cd_name})
        for pod in pods:
            kubelet.set(pod, ready=False, restarts=2)
        return len(pods) >= 2

    wait_for("new pods to crash", crashed, timeout=60)


def image_of(kube: Kube, namespace: str, name: str) -> str:
    containers = kube.get(DEPLOYMENTS, name, namespace)["spec"]["template"]["spec"]["containers"]
    return str(next(c for c in containers if c["name"] != "sc-proxy")["image"])


def test_breaker_with_rollback_returns_to_the_last_completed_definition(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    body = service_body("api", namespace, connect_namespace, desired=2, breaker=(True, True))
    kube.create(CONNECT_SERVICES, body, namespace)
    good = complete_first(kube, kubelet, namespace, "api")
    bad = update_image(kube, namespace, "api", "registry.example/app:broken")
    crash_new_pods(kube, kubelet, namespace, "api", bad["metadata"]["name"])

    cds = wait_for(
        "a rollback rollout", lambda: (c := rollouts(kube, namespace, "api"))[2:] and c, timeout=60
    )
    failed = kube.get(CONNECT_DEPLOYMENTS, bad["metadata"]["name"], namespace)
    assert state(failed) == "FAILED"
    assert "circuit breaker" in failed["status"]["rolloutStateReason"]
    back = cds[2]
    assert back["metadata"]["annotations"]["serviceconnect.dev/rollback-from"] == bad["metadata"]["name"]
    assert back["spec"]["taskDefinitionHash"] == good["spec"]["taskDefinitionHash"]
    assert f"rolled back from {bad['metadata']['name']}" in back["status"]["rolloutStateReason"]
    assert image_of(kube, namespace, "api") == "registry.example/app:1"
    # The user's spec is not rewritten.
    svc = kube.get(CONNECT_SERVICES, "api", namespace)
    assert svc["spec"]["taskDefinition"]["containerDefinitions"][0]["image"] == "registry.example/app:broken"

    def rollback_done() -> dict[str, Any] | None:
        kubelet.ready_all({"serviceconnect.dev/deployment": back["metadata"]["name"]})
        cd = kube.get(CONNECT_DEPLOYMENTS, back["metadata"]["name"], namespace)
        return cd if state(cd) == "COMPLETED" else None

    wait_for("the rollback COMPLETED", rollback_done, timeout=60)
    # Resyncs (every 3 s here) must not try the failed definition again until the spec changes.
    wait_for("two resyncs", lambda: operator.log().count("service_resync") >= 2 or None, timeout=20)
    assert len(rollouts(kube, namespace, "api")) == 3
    events = kube.get(CONNECT_SERVICES, "api", namespace)["status"]["events"]
    assert any("rolling back" in e["message"] for e in events)

    # A new spec is a new rollout again.
    update_image(kube, namespace, "api", "registry.example/app:3")
    wait_for("a fourth rollout", lambda: len(rollouts(kube, namespace, "api")) == 4)
    assert image_of(kube, namespace, "api") == "registry.example/app:3"


def test_breaker_without_rollback_marks_failed_and_stays(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    body = service_body("batch", namespace, connect_namespace, desired=2, breaker=(True, False))
    kube.create(CONNECT_SERVICES, body, namespace)
    complete_first(kube, kubelet, namespace, "batch")
    bad = update_image(kube, namespace, "batch", "registry.example/app:broken")
    crash_new_pods(kube, kubelet, namespace, "batch", bad["metadata"]["name"])
    failed = wait_for(
        "FAILED",
        lambda: (
            state(cd := kube.get(CONNECT_DEPLOYMENTS, bad["metadata"]["name"], namespace)) == "FAILED" and cd
        ),
    )
    assert failed["status"]["status"] == "PRIMARY"
    assert failed["status"]["failedTasks"] >= 3
    assert len(rollouts(kube, namespace, "batch")) == 2
    assert image_of(kube, namespace, "batch") == "registry.example/app:broken"
    summary = kube.get(CONNECT_SERVICES, "batch", namespace)["status"]["deployments"]
    assert summary[0]["rolloutState"] == "FAILED"


def test_breaker_disabled_keeps_trying(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    kube.create(CONNECT_SERVICES, service_body("plain", namespace, connect_namespace, desired=2), namespace)
    first = wait_for("a rollout", lambda: rollouts(kube, namespace, "plain"))[0]
    crash_new_pods(kube, kubelet, namespace, "plain", first["metadata"]["name"])
    cd = wait_for(
        "failed tasks counted",
        lambda: (
            (c := kube.get(CONNECT_DEPLOYMENTS, first["metadata"]["name"], namespace))["status"][
                "failedTasks"
            ]
            >= 3
            and c
        ),
    )
    assert state(cd) == "IN_PROGRESS"
