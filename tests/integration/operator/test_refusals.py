"""What ECS refuses, the operator refuses: Accepted=False naming the rule, an Event, nothing created;
and a running service updated into an invalid state keeps running unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sc_operator.kube import (
    CONFIGMAPS,
    CONNECT_DEPLOYMENTS,
    CONNECT_NAMESPACES,
    CONNECT_SERVICES,
    DEPLOYMENTS,
    EVENTS,
    SERVICES,
    Kube,
)
from support.operator import Kubelet, OperatorProcess, accepted, service_body, wait_for

Mutation = Callable[[dict[str, Any]], None]


def _controller(kind: str) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        spec["deploymentController"] = {"type": kind}

    return mutate


def _windows(spec: dict[str, Any]) -> None:
    spec["taskDefinition"]["runtimePlatform"] = {"operatingSystemFamily": "WINDOWS_SERVER_2019_CORE"}


def _no_task_memory(spec: dict[str, Any]) -> None:
    del spec["taskDefinition"]["memory"]


def _container_memory_at_task_memory(spec: dict[str, Any]) -> None:
    spec["taskDefinition"]["containerDefinitions"][0]["memory"] = 512


def _hostname_in_bridge(spec: dict[str, Any]) -> None:
    spec["taskDefinition"]["networkMode"] = "bridge"
    spec["taskDefinition"]["containerDefinitions"][0]["hostname"] = "web"


def _per_request_timeout_on_tcp(spec: dict[str, Any]) -> None:
    del spec["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]["appProtocol"]
    spec["serviceConnectConfiguration"]["services"][0]["timeout"] = {"perRequestTimeoutSeconds": 5}


def _ecs_anywhere(spec: dict[str, Any]) -> None:
    spec["taskDefinition"]["requiresCompatibilities"] = ["EXTERNAL"]


def _host_mode(spec: dict[str, Any]) -> None:
    spec["taskDefinition"]["networkMode"] = "host"


def _awsvpc_host_port(spec: dict[str, Any]) -> None:
    spec["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]["hostPort"] = 18080


REFUSALS: list[tuple[str, Mutation, str]] = [
    ("code-deploy", _controller("CODE_DEPLOY"), "deployment-controller"),
    ("external", _controller("EXTERNAL"), "deployment-controller"),
    ("windows", _windows, "windows"),
    ("no-task-memory", _no_task_memory, "task-memory-required"),
    ("container-memory", _container_memory_at_task_memory, "container-memory"),
    ("bridge-hostname", _hostname_in_bridge, "bridge-hostname"),
    ("tcp-timeout", _per_request_timeout_on_tcp, "tcp-per-request-timeout"),
    ("ecs-anywhere", _ecs_anywhere, "external-instances"),
    ("host-mode", _host_mode, "network-mode"),
    ("awsvpc-host-port", _awsvpc_host_port, "awsvpc-host-port"),
]


def nothing_created(kube: Kube, namespace: str, name: str) -> None:
    labels = {"serviceconnect.dev/service": name}
    assert kube.get_or_none(DEPLOYMENTS, name, namespace) is None
    assert kube.list(CONNECT_DEPLOYMENTS, namespace, labels) == []
    assert kube.list(CONFIGMAPS, namespace, labels) == []
    assert kube.list(SERVICES, namespace, labels) == []


def refused(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    cond = wait_for(f"{name} judged", lambda: accepted(kube, namespace, name))
    assert cond["status"] == "False", cond
    return cond


def test_each_ecs_refusal_names_its_rule_and_creates_nothing(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str
) -> None:
    for name, mutate, _ in REFUSALS:
        body = service_body(name, namespace, connect_namespace)
        mutate(body["spec"])
        kube.create(CONNECT_SERVICES, body, namespace)
    for name, _, rule in REFUSALS:
        cond = refused(kube, namespace, name)
        assert f"[{rule}]" in cond["message"], (name, cond)
        nothing_created(kube, namespace, name)
    events = kube.list(EVENTS, namespace)
    warned = {e["involvedObject"]["name"] for e in events if e["type"] == "Warning"}
    assert {name for name, _, _ in REFUSALS} <= warned
    # A refused service registers nothing.
    registry = kube.get(CONNECT_NAMESPACES, connect_namespace).get("status") or {}
    assert (registry.get("endpoints") or []) == []


@pytest.mark.parametrize(
    ("second", "rule"),
    [
        ({"discovery": "shared", "dns": "other"}, "discovery-name-duplicate"),
        ({"discovery": "mine", "dns": "shared", "port": 80}, "client-alias-duplicate"),
        # dnsName "shared" on another port is fine as a dnsName, but it is first's discoveryName, which
        # clients resolve too: one name would mean two endpoints.
        ({"discovery": "mine", "dns": "shared", "port": 81}, "client-name-collision"),
    ],
)
def test_duplicate_names_across_services_are_refused(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    connect_namespace: str,
    second: dict[str, Any],
    rule: str,
) -> None:
    kube.create(
        CONNECT_SERVICES, service_body("first", namespace, connect_namespace, discovery="shared"), namespace
    )
    assert wait_for("first judged", lambda: accepted(kube, namespace, "first"))["status"] == "True"
    kube.create(CONNECT_SERVICES, service_body("second", namespace, connect_namespace, **second), namespace)
    cond = refused(kube, namespace, "second")
    assert f"[{rule}]" in cond["message"]
    assert f"{namespace}/first" in cond["message"]  # names the holder
    if rule == "client-name-collision":
        assert f"{namespace}/second" in cond["message"]  # and the newcomer
    nothing_created(kube, namespace, "second")
    registry = kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]
    assert {e["service"]["name"] for e in registry["endpoints"]} == {"first"}


def test_a_running_service_updated_into_an_invalid_state_keeps_running(
    operator: OperatorProcess, kube: Kube, namespace: str, connect_namespace: str, kubelet: Kubelet
) -> None:
    kube.create(CONNECT_SERVICES, service_body("steady", namespace, connect_namespace), namespace)
    assert wait_for("steady judged", lambda: accepted(kube, namespace, "steady"))["status"] == "True"
    wait_for("pods", lambda: kubelet.ready_all({"serviceconnect.dev/service": "steady"}))
    before = kube.get(DEPLOYMENTS, "steady", namespace)
    cds_before = kube.list(CONNECT_DEPLOYMENTS, namespace, {"serviceconnect.dev/service": "steady"})

    # A merge patch, as kubectl sends: a PUT of what was read races the operator's status writes.
    kube.patch(
        CONNECT_SERVICES,
        "steady",
        {"spec": {"deploymentController": {"type": "CODE_DEPLOY"}, "desiredCount": 4}},
        namespace,
    )
    cond = refused(kube, namespace, "steady")
    assert "[deployment-controller]" in cond["message"]

    after = kube.get(DEPLOYMENTS, "steady", namespace)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["replicas"] == 1
    cds_after = kube.list(CONNECT_DEPLOYMENTS, namespace, {"serviceconnect.dev/service": "steady"})
    assert [c["metadata"]["name"] for c in cds_after] == [c["metadata"]["name"] for c in cds_before]
    registry = kube.get(CONNECT_NAMESPACES, connect_namespace)["status"]
    assert [e["discoveryName"] for e in registry["endpoints"]] == ["steady"]
