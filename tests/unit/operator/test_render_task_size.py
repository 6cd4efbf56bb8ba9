"""The task size (task-level cpu/memory) applied to the pod: pod-level resources on Kubernetes ≥ 1.34, else
a split across the containers that set no size of their own; the proxy's share comes out of the task.

The seed tutorial's task: cpu 256 units (250m), memory 512 MiB, one container ``webserver`` with cpu 100
(98m) and no memory; the proxy is sized 256 units (250m) / 64 MiB, limit 128 MiB.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sc_operator.render.resources import POD_LEVEL_RESOURCES_VERSION
from sc_operator.settings import OperatorSettings
from support.render import (
    NGINX_SPEC,
    client_inputs,
    container,
    k8s_validate,
    make_inputs,
    pod_spec,
    with_container,
)

POD_LEVEL = POD_LEVEL_RESOURCES_VERSION
OLD = (1, 33)


def test_pod_level_resources_from_1_34() -> None:
    """Requests and limits of the pod are the task size, exactly as ECS bounds the whole task."""
    assert POD_LEVEL == (1, 34)
    spec = pod_spec(make_inputs(version=POD_LEVEL))
    assert spec["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "250m", "memory": "512Mi"},
    }
    # The container keeps its own values and gets no share: the pod's limit bounds it.
    assert container(spec, "webserver")["resources"] == {"requests": {"cpu": "98m"}}


def test_with_pod_level_resources_the_proxy_uses_what_the_containers_leave() -> None:
    spec = pod_spec(make_inputs(version=POD_LEVEL))
    # 250m - 98m = 152m left of the task's CPU (less than the sized 250m); all 64 MiB fit in the memory.
    assert container(spec, "sc-proxy")["resources"] == {"requests": {"cpu": "152m", "memory": "64Mi"}}
    requests = [container(spec, name)["resources"].get("requests", {}) for name in ("webserver", "sc-proxy")]
    assert sum(int(r["cpu"].rstrip("m")) for r in requests) <= 250


def test_container_limits_count_as_reservations_against_the_task() -> None:
    """The client: task 512 units / 1024 MiB, curl cpu 256, memory 256 (reservation 128)."""
    spec = pod_spec(client_inputs(version=POD_LEVEL))
    assert spec["resources"]["limits"] == {"cpu": "500m", "memory": "1024Mi"}
    assert container(spec, "curl")["resources"] == {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }
    # 500m - 250m = 250m: the sized proxy fits whole.
    assert container(spec, "sc-proxy")["resources"] == {"requests": {"cpu": "250m", "memory": "64Mi"}}


def test_a_task_with_no_room_left_gives_the_proxy_no_request() -> None:
    spec_doc = with_container(NGINX_SPEC, cpu=256, memoryReservation=512, memory=None)
    spec = pod_spec(make_inputs(spec_doc, version=POD_LEVEL))
    assert container(spec, "sc-proxy")["resources"] == {}


def test_an_explicit_proxy_size_is_kept_with_pod_level_resources() -> None:
    spec_doc = copy.deepcopy(NGINX_SPEC)
    spec_doc["proxyResources"] = {"cpu": 128, "memory": 96}
    proxy = container(pod_spec(make_inputs(spec_doc, version=POD_LEVEL)), "sc-proxy")
    assert proxy["resources"]["requests"] == {"cpu": "125m", "memory": "96Mi"}


@pytest.mark.parametrize("version", [(1, 20), OLD])
def test_before_1_34_the_task_memory_is_split(version: tuple[int, int]) -> None:
    """No pod-level field: the container without memory gets the task's memory less the proxy's limit."""
    spec = pod_spec(make_inputs(version=version))
    assert "resources" not in spec
    assert container(spec, "webserver")["resources"] == {
        "requests": {"cpu": "98m"},
        "limits": {"memory": "384Mi"},
    }
    proxy = container(spec, "sc-proxy")["resources"]
    assert proxy == {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
    # Every byte of the task is bounded, and no more.
    limits = [container(spec, n)["resources"]["limits"]["memory"] for n in ("webserver", "sc-proxy")]
    assert sum(int(m.removesuffix("Mi")) for m in limits) == 512


def test_the_split_shares_among_containers_without_memory_and_cpu() -> None:
    spec_doc = copy.deepcopy(NGINX_SPEC)
    task = spec_doc["taskDefinition"]
    task["cpu"], task["memory"] = "1024", "1024"
    base = task["containerDefinitions"][0]
    task["containerDefinitions"] = [
        {**base, "name": "a", "cpu": 256, "memory": 256},
        {**base, "name": "b", "cpu": None, "portMappings": []},
        {**base, "name": "c", "cpu": None, "portMappings": []},
    ]
    for c in task["containerDefinitions"]:
        if c["cpu"] is None:
            del c["cpu"]
    spec = pod_spec(make_inputs(spec_doc, version=OLD))
    # Memory: 1024 - 256 (a) - 128 (proxy limit) = 640, 320 each. CPU: 1000m - 250m - 250m = 500m, 250m each.
    assert container(spec, "a")["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "256Mi"}}
    for name in ("b", "c"):
        assert container(spec, name)["resources"] == {
            "requests": {"cpu": "250m"},
            "limits": {"memory": "320Mi"},
        }


def test_a_small_task_takes_only_the_proxys_reservation() -> None:
    """128 MiB task: the proxy's 128 MiB limit would leave nothing, so only its 64 MiB reservation counts."""
    spec_doc = copy.deepcopy(NGINX_SPEC)
    spec_doc["taskDefinition"]["memory"] = "128"
    web = container(pod_spec(make_inputs(spec_doc, version=OLD)), "webserver")
    assert web["resources"]["limits"] == {"memory": "64Mi"}


def test_without_service_connect_the_task_is_split_among_the_containers() -> None:
    spec_doc = copy.deepcopy(NGINX_SPEC)
    spec_doc["serviceConnectConfiguration"]["enabled"] = False
    assert container(pod_spec(make_inputs(spec_doc, version=OLD)), "webserver")["resources"] == {
        "requests": {"cpu": "98m"},
        "limits": {"memory": "512Mi"},
    }
    assert pod_spec(make_inputs(spec_doc, version=POD_LEVEL))["resources"]["limits"]["memory"] == "512Mi"


@pytest.mark.parametrize(
    ("setting", "version", "pod_level"),
    [("auto", OLD, False), ("auto", POD_LEVEL, True), ("disabled", (1, 37), False), ("enabled", OLD, True)],
)
def test_the_setting_overrides_the_version(setting: Any, version: tuple[int, int], pod_level: bool) -> None:
    settings = OperatorSettings(pod_level_resources=setting)
    spec = pod_spec(make_inputs(version=version, settings=settings))
    assert ("resources" in spec) is pod_level


def test_the_rendered_deployments_match_the_schema() -> None:
    """The split on the oldest schema the validator ships; pod-level resources on 1.37's."""
    from sc_operator.render import render_children

    for inputs in (make_inputs(), client_inputs()):
        k8s_validate(render_children(inputs).deployment)
    for inputs in (make_inputs(version=(1, 37)), client_inputs(version=(1, 37))):
        k8s_validate(render_children(inputs).deployment, "1.37")


@pytest.mark.parametrize(("mode", "published"), [("bridge", [{"hostPort": 8080}]), ("awsvpc", [{}])])
def test_bridge_publishes_host_ports(mode: str, published: list[dict[str, int]]) -> None:
    spec_doc = copy.deepcopy(NGINX_SPEC)
    spec_doc["taskDefinition"]["networkMode"] = mode
    mapping = spec_doc["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]
    mapping["hostPort"] = 8080 if mode == "bridge" else 80
    ports = container(pod_spec(make_inputs(spec_doc)), "webserver")["ports"]
    assert [{k: v for k, v in p.items() if k == "hostPort"} for p in ports] == published


def test_bridge_dynamic_host_port_publishes_nothing() -> None:
    spec_doc = copy.deepcopy(NGINX_SPEC)
    spec_doc["taskDefinition"]["networkMode"] = "bridge"
    spec_doc["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]["hostPort"] = 0
    ports = container(pod_spec(make_inputs(spec_doc)), "webserver")["ports"]
    assert "hostPort" not in ports[0]
