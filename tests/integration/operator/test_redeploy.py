"""Redeploys that re-pin the namespace: forceNewDeployment, `scctl redeploy`, and the autoRedeploy policy.

ECS pins a deployment's endpoints when it starts ("You must redeploy existing services before the
applications can resolve new endpoints"); ``update-service --force-new-deployment`` is how ECS users
redeploy. Here: the real operator, the real API server and kube-controller-manager; the test plays the
kubelet (pods turn Ready because it says so).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from sc_operator.kube import (
    CONNECT_DEPLOYMENTS,
    CONNECT_NAMESPACES,
    CONNECT_SERVICES,
    DEPLOYMENTS,
    EVENTS,
    Kube,
)
from support.envtest import KubeAPI
from support.operator import Kubelet, OperatorProcess, service_body, wait_for

SCCTL = Path(sys.executable).with_name("scctl")
REASON = "serviceconnect.dev/redeploy-reason"


def rollouts(kube: Kube, namespace: str, service: str) -> list[dict[str, Any]]:
    cds = kube.list(CONNECT_DEPLOYMENTS, namespace, {"serviceconnect.dev/service": service}, cached=False)
    return sorted(cds, key=lambda c: int(c["metadata"]["annotations"]["serviceconnect.dev/sequence"]))


def state(cd: dict[str, Any]) -> str | None:
    return (cd.get("status") or {}).get("rolloutState")


def wait_completed(
    kube: Kube, kubelet: Kubelet, namespace: str, service: str, count: int = 1
) -> dict[str, Any]:
    """The service's ``count``-th rollout COMPLETED (its pods made Ready by the test)."""

    def done() -> dict[str, Any] | None:
        kubelet.ready_all({"serviceconnect.dev/service": service})
        cds = rollouts(kube, namespace, service)
        return cds[-1] if len(cds) == count and state(cds[-1]) == "COMPLETED" else None

    return wait_for(f"{service} rollout #{count} COMPLETED", done, timeout=60)


def pinned(cd: dict[str, Any]) -> list[str]:
    return sorted(e["discoveryName"] for e in cd["spec"].get("endpoints") or [])


def registered(kube: Kube, cns: str, discovery: str) -> bool:
    status = kube.get(CONNECT_NAMESPACES, cns).get("status") or {}
    return any(e["discoveryName"] == discovery for e in status.get("endpoints") or [])


def add_server(kube: Kube, namespace: str, cns: str, name: str) -> None:
    kube.create(CONNECT_SERVICES, service_body(name, namespace, cns), namespace)
    wait_for(f"{name} registered in {cns}", lambda: registered(kube, cns, name))


def client(
    name: str, namespace: str, cns: str, policy: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    body = service_body(name, namespace, cns, serve=False, **kw)
    if policy is not None:
        body["spec"]["autoRedeploy"] = policy
    return body


def events(kube: Kube, namespace: str, name: str) -> list[tuple[str, str]]:
    return [
        (e["reason"], e["message"])
        for e in kube.list(EVENTS, namespace, cached=False)
        if e["involvedObject"].get("name") == name and e["involvedObject"].get("kind") == "ConnectService"
    ]


def condition(kube: Kube, namespace: str, name: str, type_: str = "AutoRedeploy") -> dict[str, Any] | None:
    status = kube.get(CONNECT_SERVICES, name, namespace).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


def resyncs(operator: OperatorProcess, namespace: str, name: str) -> int:
    """Timer runs for one service, from kopf's log lines ("[ns/name] Timer 'service_resync' ...")."""
    return sum(
        1
        for line in operator.log().splitlines()
        if f"[{namespace}/{name}]" in line and "service_resync" in line
    )


def after_resyncs(operator: OperatorProcess, namespace: str, name: str, n: int = 2) -> None:
    start = resyncs(operator, namespace, name)
    wait_for(
        f"{n} more resyncs of {name}", lambda: resyncs(operator, namespace, name) >= start + n, timeout=30
    )


def hosts(kube: Kube, namespace: str, name: str) -> list[str]:
    template = kube.get(DEPLOYMENTS, name, namespace)["spec"]["template"]
    return sorted(h for a in template["spec"].get("hostAliases") or [] for h in a["hostnames"])


def test_force_new_deployment_pins_endpoints_registered_after_the_first_rollout(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    add_server(kube, namespace, connect_namespace, "orders")
    kube.create(CONNECT_SERVICES, client("web", namespace, connect_namespace), namespace)
    first = wait_completed(kube, kubelet, namespace, "web")
    assert pinned(first) == ["orders"]
    add_server(kube, namespace, connect_namespace, "payments")

    kube.patch(CONNECT_SERVICES, "web", {"spec": {"forceNewDeployment": "token-1"}}, namespace)
    second = wait_for(
        "a second web rollout", lambda: (cds := rollouts(kube, namespace, "web"))[1:] and cds[1]
    )
    assert pinned(second) == ["orders", "payments"]
    assert second["spec"]["taskDefinitionHash"] == first["spec"]["taskDefinitionHash"]  # the same definition
    annotations = second["metadata"]["annotations"]
    assert annotations["serviceconnect.dev/force-new-deployment"] == "token-1"
    assert annotations[REASON].startswith("ForceNewDeployment:")
    # The pods roll: the Deployment is re-rendered from the new rollout, and the old one drains.
    wait_for("web re-rendered with payments", lambda: "payments" in hosts(kube, namespace, "web"))
    wait_completed(kube, kubelet, namespace, "web", count=2)
    wait_for(
        "the first rollout INACTIVE",
        lambda: (
            kube.get(CONNECT_DEPLOYMENTS, first["metadata"]["name"], namespace)["status"]["status"]
            == "INACTIVE"
        ),
    )
    assert any(
        r == "ForceNewDeployment" and second["metadata"]["name"] in m
        for r, m in events(kube, namespace, "web")
    )
    status_events = kube.get(CONNECT_SERVICES, "web", namespace)["status"]["events"]
    assert any("redeploying (forceNewDeployment" in e["message"] for e in status_events)

    # The same token again does nothing, even when the service is reconciled for another reason.
    add_server(kube, namespace, connect_namespace, "shipping")
    kube.patch(
        CONNECT_SERVICES, "web", {"spec": {"forceNewDeployment": "token-1", "desiredCount": 2}}, namespace
    )
    wait_for("web scaled to 2", lambda: kube.get(DEPLOYMENTS, "web", namespace)["spec"]["replicas"] == 2)
    after_resyncs(operator, namespace, "web")
    assert len(rollouts(kube, namespace, "web")) == 2


def test_scctl_redeploy_against_the_api_server(
    operator: OperatorProcess,
    kube: Kube,
    kube_api: KubeAPI,
    namespace: str,
    connect_namespace: str,
    kubelet: Kubelet,
) -> None:
    add_server(kube, namespace, connect_namespace, "orders")
    kube.create(CONNECT_SERVICES, client("web", namespace, connect_namespace), namespace)
    first = wait_completed(kube, kubelet, namespace, "web")
    add_server(kube, namespace, connect_namespace, "payments")

    run = subprocess.run(
        [str(SCCTL), "redeploy", f"{namespace}/web", "--wait", "60"],
        capture_output=True,
        text=True,
        timeout=90,
        env=kube_api.env(),
        check=False,
    )
    assert run.returncode == 0, run.stderr
    cds = rollouts(kube, namespace, "web")
    assert cds[0]["metadata"]["name"] == first["metadata"]["name"]
    assert len(cds) == 2
    assert f"connectdeployment {namespace}/{cds[1]['metadata']['name']} started" in run.stdout
    token = kube.get(CONNECT_SERVICES, "web", namespace)["spec"]["forceNewDeployment"]
    assert f"forceNewDeployment set to {token}" in run.stdout
    assert pinned(cds[1]) == ["orders", "payments"]

    missing = subprocess.run(
        [str(SCCTL), "redeploy", f"{namespace}/nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env=kube_api.env(),
        check=False,
    )
    assert missing.returncode == 1
    assert f"ConnectService {namespace}/nope not found" in missing.stderr


def test_auto_redeploy_off_by_default_on_redeploys_once_then_rate_limits(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    add_server(kube, namespace, connect_namespace, "orders")
    kube.create(CONNECT_SERVICES, client("plain", namespace, connect_namespace), namespace)
    policy = {"onNewEndpoints": True, "minIntervalSeconds": 3600}
    kube.create(CONNECT_SERVICES, client("eager", namespace, connect_namespace, policy), namespace)
    wait_completed(kube, kubelet, namespace, "plain")
    wait_completed(kube, kubelet, namespace, "eager")
    wait_for(
        "eager: UpToDate", lambda: (c := condition(kube, namespace, "eager")) and c["reason"] == "UpToDate"
    )

    add_server(kube, namespace, connect_namespace, "payments")
    # On: exactly one redeploy, which pins the new endpoint and says why.
    second = wait_for("eager redeployed", lambda: (cds := rollouts(kube, namespace, "eager"))[1:] and cds[1])
    assert pinned(second) == ["orders", "payments"]
    assert second["metadata"]["annotations"][REASON].startswith("NewEndpoints:")
    assert "payments:80" in second["metadata"]["annotations"][REASON]
    cond = condition(kube, namespace, "eager")
    assert cond is not None
    # NewEndpoints, until the next resync finds the new rollout pinning everything.
    assert (cond["status"], cond["reason"]) in {("True", "NewEndpoints"), ("True", "UpToDate")}
    assert any(r == "NewEndpoints" and "payments:80" in m for r, m in events(kube, namespace, "eager"))
    wait_completed(kube, kubelet, namespace, "eager", count=2)

    # A second new endpoint within minIntervalSeconds: no redeploy, and the condition says until when.
    add_server(kube, namespace, connect_namespace, "shipping")
    limited = wait_for(
        "eager: RateLimited",
        lambda: (c := condition(kube, namespace, "eager")) and c["reason"] == "RateLimited" and c,
    )
    assert limited["status"] == "False"
    assert "shipping:80" in limited["message"]
    after_resyncs(operator, namespace, "eager")
    assert len(rollouts(kube, namespace, "eager")) == 2

    # Off (the default, as ECS): the same endpoints never reach the running client.
    after_resyncs(operator, namespace, "plain")
    plain = rollouts(kube, namespace, "plain")
    assert len(plain) == 1
    assert pinned(plain[0]) == ["orders"]
    assert condition(kube, namespace, "plain") is None


def test_no_auto_redeploy_while_a_rollout_is_in_progress(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    add_server(kube, namespace, connect_namespace, "orders")
    policy = {"onNewEndpoints": True, "minIntervalSeconds": 0}
    kube.create(CONNECT_SERVICES, client("web", namespace, connect_namespace, policy), namespace)
    wait_for(
        "web's pod", lambda: kubelet.pods({"serviceconnect.dev/service": "web"})
    )  # not Ready: in progress
    add_server(kube, namespace, connect_namespace, "payments")
    waiting = wait_for(
        "web: RolloutInProgress",
        lambda: (c := condition(kube, namespace, "web")) and c["reason"] == "RolloutInProgress" and c,
    )
    assert "payments:80" in waiting["message"]
    after_resyncs(operator, namespace, "web")
    assert len(rollouts(kube, namespace, "web")) == 1

    # Once the rollout completes, the policy acts.
    wait_completed(kube, kubelet, namespace, "web", count=1)
    second = wait_for("web redeployed", lambda: (cds := rollouts(kube, namespace, "web"))[1:] and cds[1])
    assert pinned(second) == ["orders", "payments"]


def test_no_auto_redeploy_after_the_circuit_breaker_rolled_back(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    add_server(kube, namespace, connect_namespace, "orders")
    policy = {"onNewEndpoints": True, "minIntervalSeconds": 0}
    body = client("api", namespace, connect_namespace, policy, desired=2, breaker=(True, True))
    kube.create(CONNECT_SERVICES, body, namespace)
    wait_completed(kube, kubelet, namespace, "api")
    containers = kube.get(CONNECT_SERVICES, "api", namespace)["spec"]["taskDefinition"][
        "containerDefinitions"
    ]
    containers[0]["image"] = "registry.example/app:broken"
    # The broken image comes with a forceNewDeployment token, which the rollback must inherit.
    broken = {"taskDefinition": {"containerDefinitions": containers}, "forceNewDeployment": "t1"}
    kube.patch(CONNECT_SERVICES, "api", {"spec": broken}, namespace)
    bad = wait_for("the broken rollout", lambda: (cds := rollouts(kube, namespace, "api"))[1:] and cds[1])

    def crashed() -> bool:
        pods = kubelet.pods({"serviceconnect.dev/deployment": bad["metadata"]["name"]})
        for pod in pods:
            kubelet.set(pod, ready=False, restarts=2)
        return len(pods) >= 2

    wait_for("the broken pods crash", crashed, timeout=60)
    back = wait_for(
        "the rollback", lambda: (cds := rollouts(kube, namespace, "api"))[2:] and cds[2], timeout=60
    )
    assert back["metadata"]["annotations"]["serviceconnect.dev/rollback-from"] == bad["metadata"]["name"]

    def rollback_done() -> bool:
        kubelet.ready_all({"serviceconnect.dev/deployment": back["metadata"]["name"]})
        return state(kube.get(CONNECT_DEPLOYMENTS, back["metadata"]["name"], namespace)) == "COMPLETED"

    wait_for("the rollback COMPLETED", rollback_done, timeout=60)
    add_server(kube, namespace, connect_namespace, "payments")
    held = wait_for(
        "api: CircuitBreaker",
        lambda: (c := condition(kube, namespace, "api")) and c["reason"] == "CircuitBreaker" and c,
    )
    assert "rolled back" in held["message"]
    after_resyncs(operator, namespace, "api")
    assert len(rollouts(kube, namespace, "api")) == 3
    assert back["metadata"]["annotations"]["serviceconnect.dev/force-new-deployment"] == "t1"
    # A reconcile for another reason (scaling) neither retries the failed definition nor takes the
    # inherited token for a new one.
    kube.patch(CONNECT_SERVICES, "api", {"spec": {"desiredCount": 3}}, namespace)
    wait_for("api scaled to 3", lambda: kube.get(DEPLOYMENTS, "api", namespace)["spec"]["replicas"] == 3)
    assert len(rollouts(kube, namespace, "api")) == 3
    # A new token is the user's decision: the spec as it stands is deployed again, pinning payments.
    kube.patch(CONNECT_SERVICES, "api", {"spec": {"forceNewDeployment": "t2"}}, namespace)
    retry = wait_for("a forced rollout", lambda: (cds := rollouts(kube, namespace, "api"))[3:] and cds[3])
    assert retry["spec"]["taskDefinitionHash"] == bad["spec"]["taskDefinitionHash"]
    assert pinned(retry) == ["orders", "payments"]


def test_connect_namespace_default_policy_and_a_service_opting_out(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    add_server(kube, namespace, connect_namespace, "orders")
    kube.create(CONNECT_SERVICES, client("follower", namespace, connect_namespace), namespace)
    optout = client("optout", namespace, connect_namespace, {"onNewEndpoints": False})
    kube.create(CONNECT_SERVICES, optout, namespace)
    wait_completed(kube, kubelet, namespace, "follower")
    wait_completed(kube, kubelet, namespace, "optout")

    # The administrator turns the default on for the whole ConnectNamespace (an update, not a creation).
    default = {"onNewEndpoints": True, "minIntervalSeconds": 0}
    kube.patch(CONNECT_NAMESPACES, connect_namespace, {"spec": {"autoRedeploy": default}})
    wait_for(
        "follower: the namespace policy applies",
        lambda: (c := condition(kube, namespace, "follower")) and c["reason"] == "UpToDate",
    )
    add_server(kube, namespace, connect_namespace, "payments")
    second = wait_for(
        "follower redeployed", lambda: (cds := rollouts(kube, namespace, "follower"))[1:] and cds[1]
    )
    assert pinned(second) == ["orders", "payments"]
    assert "namespace policy" in second["metadata"]["annotations"][REASON]
    after_resyncs(operator, namespace, "optout")
    assert len(rollouts(kube, namespace, "optout")) == 1
