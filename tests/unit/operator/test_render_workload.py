"""The rendered Deployment: task containers, the injected proxy, start ordering, hostAliases, rollout."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from sc_operator.render import render_children
from sc_operator.render.names import (
    CONFIG_HASH_ANNOTATION,
    DEPLOYMENT_LABEL,
    MANAGED_BY_LABEL,
    PROXY_VERSION_ANNOTATION,
    SERVICE_LABEL,
    is_label_value,
)
from sc_operator.settings import OperatorSettings
from support.render import (
    CLIENT_SPEC,
    NGINX_ENDPOINT,
    NGINX_SPEC,
    client_inputs,
    container,
    endpoint,
    k8s_validate,
    make_inputs,
    pod_spec,
    with_container,
)


def test_nginx_deployment_is_valid_and_owned_by_the_service() -> None:
    children = render_children(make_inputs())
    dep = children.deployment
    k8s_validate(dep)
    assert dep["metadata"]["name"] == "nginx"
    assert dep["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "serviceconnect.dev/v1alpha1",
            "kind": "ConnectService",
            "name": "nginx",
            "uid": "11111111-2222-3333-4444-555555555555",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert dep["spec"]["replicas"] == 1
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector == {MANAGED_BY_LABEL: "serviceconnect", SERVICE_LABEL: "nginx"}
    template = dep["spec"]["template"]
    # The selector must match the pods and every rollout's pods carry their ConnectDeployment's name.
    assert selector.items() <= template["metadata"]["labels"].items()
    assert template["metadata"]["labels"][DEPLOYMENT_LABEL] == "nginx-0123456789"
    annotations = template["metadata"]["annotations"]
    assert annotations[CONFIG_HASH_ANNOTATION] == children.config_hash
    assert annotations[PROXY_VERSION_ANNOTATION] == "0.1.0"


def test_nginx_task_container() -> None:
    web = container(pod_spec(make_inputs()), "webserver")
    assert web["image"] == "public.ecr.aws/docker/library/nginx:latest"
    assert web["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "nginx"}]
    # cpu 100 units = 97.66m, rounded up; no memory of its own, so on a server without pod-level
    # resources it gets the task's 512 MiB less the proxy's 128 MiB limit (tests/unit/operator/
    # test_render_task_size.py covers the task size in full).
    assert web["resources"] == {"requests": {"cpu": "98m"}, "limits": {"memory": "384Mi"}}
    assert "readinessProbe" not in web


@pytest.mark.parametrize(
    ("units", "quantity"),
    [(1, "1m"), (10, "10m"), (100, "98m"), (256, "250m"), (1023, "1000m"), (1024, "1000m"), (1025, "1001m"),
     (4096, "4000m")],
)  # fmt: skip
def test_cpu_units_become_millicores_rounded_up(units: int, quantity: str) -> None:
    web = container(pod_spec(make_inputs(with_container(NGINX_SPEC, cpu=units))), "webserver")
    assert web["resources"]["requests"]["cpu"] == quantity


def test_cpu_zero_requests_nothing() -> None:
    web = container(pod_spec(make_inputs(with_container(NGINX_SPEC, cpu=0))), "webserver")
    # No CPU of its own, and the proxy's 256 units take the whole task CPU: nothing left to share.
    assert "cpu" not in web["resources"].get("requests", {})


def test_client_container_memory_env_command_and_health_check() -> None:
    spec = pod_spec(client_inputs())
    curl = container(spec, "curl")
    k8s_validate(render_children(client_inputs()).deployment)
    assert curl["command"] == ["/bin/sh", "-c"]  # entryPoint
    assert curl["args"] == ["while true; do curl -s http://nginx/; sleep 5; done"]  # command
    assert curl["env"] == [{"name": "TARGET", "value": "http://nginx:80/"}, {"name": "EMPTY", "value": ""}]
    assert curl["resources"] == {
        "requests": {"cpu": "250m", "memory": "128Mi"},  # memoryReservation
        "limits": {"memory": "256Mi"},  # memory (hard)
    }
    probe = {
        "exec": {"command": ["/bin/sh", "-c", "curl -fs http://nginx/ || exit 1"]},
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 4,
        "successThreshold": 1,
    }
    assert curl["readinessProbe"] == probe
    assert curl["livenessProbe"] == probe
    # startPeriod 25 s at 10 s intervals: 3 checks of grace, then the 4 retries.
    assert curl["startupProbe"] == {**probe, "failureThreshold": 7}


def test_health_check_cmd_form_and_defaults() -> None:
    spec = with_container(NGINX_SPEC, healthCheck={"command": ["CMD", "/usr/bin/check", "--quick"]})
    web = container(pod_spec(make_inputs(spec)), "webserver")
    assert web["livenessProbe"] == {
        "exec": {"command": ["/usr/bin/check", "--quick"]},
        "periodSeconds": 30,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
        "successThreshold": 1,
    }
    assert "startupProbe" not in web


def test_non_essential_container_health_does_not_gate_readiness() -> None:
    spec = with_container(NGINX_SPEC, essential=False, healthCheck={"command": ["CMD-SHELL", "exit 1"]})
    children = render_children(make_inputs(spec))
    web = container(children.deployment["spec"]["template"]["spec"], "webserver")
    assert "readinessProbe" not in web
    assert "livenessProbe" not in web
    assert (
        children.deployment["spec"]["template"]["metadata"]["annotations"][
            "serviceconnect.dev/essential-containers"
        ]
        == ""
    )


def test_hostname_becomes_the_pod_hostname() -> None:
    spec = pod_spec(make_inputs(with_container(NGINX_SPEC, hostname="web-1")))
    assert spec["hostname"] == "web-1"


def test_container_names_are_made_valid() -> None:
    spec = with_container(NGINX_SPEC, name="Web_Server")
    pod = pod_spec(make_inputs(spec))
    names = [c["name"] for c in pod["containers"]]
    assert "Web_Server" not in names
    app = [n for n in names if n != "sc-proxy"]
    assert len(app) == 1
    assert app[0].startswith("web-server-")
    k8s_validate(render_children(make_inputs(spec)).deployment)


# -- the injected proxy ----------------------------------------------------------------------------


def test_proxy_image_security_context_probes_and_mount() -> None:
    settings = OperatorSettings(proxy_image="registry.example/sc-proxy:1.2.3")
    proxy = container(pod_spec(make_inputs(settings=settings)), "sc-proxy")
    assert proxy["image"] == "registry.example/sc-proxy:1.2.3"
    assert proxy["args"] == ["--config", "/etc/serviceconnect/proxy.json"]
    assert proxy["securityContext"] == {
        "runAsUser": 20000,
        "runAsGroup": 20000,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 9901}
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/live", "port": 9901}
    assert proxy["volumeMounts"] == [
        {"name": "sc-proxy-config", "mountPath": "/etc/serviceconnect", "readOnly": True},
        {"name": "sc-proxy-tmp", "mountPath": "/tmp"},  # the only writable place
    ]
    volumes = pod_spec(make_inputs())["volumes"]
    assert volumes[0] == {
        "name": "sc-proxy-config",
        "configMap": {"name": "nginx-0123456789", "items": [{"key": "proxy.json", "path": "proxy.json"}]},
    }


@pytest.mark.parametrize(
    ("rps", "services", "tasks", "cpu", "memory", "limit"),
    [
        (None, 1, 1, "250m", "64Mi", "128Mi"),  # 256 units, 64 MiB
        (500, 1, 1, "250m", "64Mi", "128Mi"),  # "more than 500" — 500 is not
        (501, 1, 1, "500m", "64Mi", "128Mi"),  # 512 units
        (None, 100, 2000, "250m", "64Mi", "128Mi"),  # at the thresholds: no extra memory
        (None, 101, 1, "250m", "192Mi", "384Mi"),  # +128 MiB
        (None, 1, 2001, "250m", "192Mi", "384Mi"),
        (1000, 150, 3000, "500m", "192Mi", "384Mi"),
    ],
)
def test_proxy_resources_follow_the_seeds(
    rps: int | None, services: int, tasks: int, cpu: str, memory: str, limit: str
) -> None:
    spec = dict(NGINX_SPEC, expectedRequestsPerSecond=rps) if rps is not None else NGINX_SPEC
    proxy = container(pod_spec(make_inputs(spec, services=services, tasks=tasks)), "sc-proxy")
    assert proxy["resources"] == {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": limit}}


def test_proxy_resources_overrides() -> None:
    spec = dict(NGINX_SPEC, proxyResources={"cpu": 1024}, expectedRequestsPerSecond=900)
    proxy = container(pod_spec(make_inputs(spec, services=500)), "sc-proxy")
    # The service's cpu wins; memory still follows the namespace rule.
    assert proxy["resources"]["requests"] == {"cpu": "1000m", "memory": "192Mi"}

    fixed = {"requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"cpu": "1", "memory": "96Mi"}}
    settings = OperatorSettings(proxy_resources=fixed)
    proxy = container(pod_spec(make_inputs(settings=settings, services=500)), "sc-proxy")
    assert proxy["resources"] == fixed
    # ... but a service's own proxyResources beats the operator setting.
    spec = dict(NGINX_SPEC, proxyResources={"memory": 300})
    proxy = container(pod_spec(make_inputs(spec, settings=settings)), "sc-proxy")
    assert proxy["resources"]["requests"] == {"cpu": "250m", "memory": "300Mi"}


# -- start ordering --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [(1, 20), (1, 28)])
def test_before_1_29_the_proxy_is_first_with_a_start_gate(version: tuple[int, int]) -> None:
    children = render_children(make_inputs(version=version))
    k8s_validate(children.deployment, f"{version[0]}.{max(version[1], 25)}")
    spec = children.deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["sc-proxy", "webserver"]
    assert [c["name"] for c in spec["initContainers"]] == ["sc-intercept"]
    proxy = spec["containers"][0]
    assert "restartPolicy" not in proxy
    assert "startupProbe" not in proxy
    assert proxy["lifecycle"]["postStart"]["exec"]["command"] == [
        "sc-proxy", "wait-ready", "--admin-port", "9901", "--timeout", "120",
    ]  # fmt: skip


@pytest.mark.parametrize("version", [(1, 29), (1, 31)])
def test_from_1_29_the_proxy_is_a_native_sidecar(version: tuple[int, int]) -> None:
    children = render_children(make_inputs(version=version))
    k8s_validate(children.deployment, "1.29")
    spec = children.deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["webserver"]
    # Interception first (iptables before anything runs), then the sidecar, whose startup probe holds the
    # app containers back until /ready.
    assert [c["name"] for c in spec["initContainers"]] == ["sc-intercept", "sc-proxy"]
    proxy = spec["initContainers"][1]
    assert proxy["restartPolicy"] == "Always"
    assert proxy["startupProbe"]["httpGet"] == {"path": "/ready", "port": 9901}
    assert proxy["startupProbe"]["periodSeconds"] * proxy["startupProbe"]["failureThreshold"] == 120
    assert "lifecycle" not in proxy


@pytest.mark.parametrize("version", [(1, 28), (1, 29)])
def test_probes_use_the_metrics_port_and_the_admin_port_stays_undeclared(version: tuple[int, int]) -> None:
    """Probes and scrapes reach ``sc-metrics`` (/ready, /live, /metrics); the loopback admin port (/config,
    POST /drain) is no container port: nothing outside the pod is pointed at it."""
    children = render_children(make_inputs(version=version))
    spec = children.deployment["spec"]["template"]["spec"]
    proxy = container(spec, "sc-proxy")
    assert children.config_map is not None
    admin = json.loads(children.config_map["data"]["proxy.json"])["admin"]
    assert admin == {"address": "0.0.0.0", "port": 9901, "localAddress": "127.0.0.1", "localPort": 9902}
    [metrics] = [p for p in proxy["ports"] if p["name"] == "sc-metrics"]
    assert metrics["containerPort"] == 9901
    assert "sc-admin" not in {p["name"] for p in proxy["ports"]}
    assert 9902 not in {p["containerPort"] for p in proxy["ports"]}
    probes = [proxy["readinessProbe"], proxy["livenessProbe"], proxy.get("startupProbe")]
    assert [p["httpGet"] for p in probes if p is not None][:2] == [
        {"path": "/ready", "port": 9901},
        {"path": "/live", "port": 9901},
    ]
    if version >= (1, 29):
        assert proxy["startupProbe"]["httpGet"] == {"path": "/ready", "port": 9901}


def test_admin_ports_move_off_the_task_ports() -> None:
    spec = dict(NGINX_SPEC)
    children = render_children(
        make_inputs(spec, settings=OperatorSettings(admin_port=80, admin_local_port=80))
    )
    assert children.config_map is not None
    admin = json.loads(children.config_map["data"]["proxy.json"])["admin"]
    assert (admin["port"], admin["localPort"]) == (81, 82)  # the task serves on 80


def test_native_sidecar_fields_are_unknown_to_old_schemas() -> None:
    """Guards the version switch: what we render for 1.29 would be refused by an older API server."""
    dep = render_children(make_inputs(version=(1, 29))).deployment
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicy"):
        k8s_validate(dep, "1.27")


# -- interception ----------------------------------------------------------------------------------


def test_redirect_mode_init_container() -> None:
    spec = pod_spec(make_inputs())
    init = container(spec, "sc-intercept")
    assert init["args"] == ["--config", "/etc/serviceconnect/proxy.json", "install-redirect"]
    assert init["image"] == OperatorSettings().proxy_image
    sc = init["securityContext"]
    assert sc["runAsUser"] == 0
    assert sc["runAsNonRoot"] is False
    assert sc["capabilities"] == {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False
    # It is the only container that does not run as non-root.
    others = [
        c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] != "sc-intercept"
    ]
    assert all(c.get("securityContext", {}).get("runAsUser") != 0 for c in others)


def test_listeners_mode_has_no_init_container() -> None:
    children = render_children(make_inputs(interception="listeners"))
    k8s_validate(children.deployment)
    spec = children.deployment["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    assert [v["name"] for v in spec["volumes"]] == ["sc-proxy-config", "sc-proxy-tmp"]


# -- hostAliases -----------------------------------------------------------------------------------


def _three_endpoints() -> list[dict[str, Any]]:
    return [
        endpoint("redis", "redis", 6379, None, "redis"),
        NGINX_ENDPOINT,
        endpoint("api", "api.internal", 8080, "grpc", "api", ns="backend"),
        endpoint("api-admin", "api.internal", 9090, "http", "api", ns="backend"),
    ]


def test_host_aliases_sorted_one_address_per_endpoint_with_all_its_names() -> None:
    # api and api-admin share the dnsName api.internal (on 8080 and 9090), so they share its address, and
    # their discoveryNames resolve there too.
    spec = pod_spec(client_inputs(endpoints=_three_endpoints()))
    assert spec["hostAliases"] == [
        {"ip": "127.255.0.1", "hostnames": ["api", "api-admin", "api.internal"]},
        {"ip": "127.255.0.2", "hostnames": ["nginx"]},
        {"ip": "127.255.0.3", "hostnames": ["redis"]},
    ]


def test_rendering_is_deterministic_whatever_the_pinned_order() -> None:
    eps = _three_endpoints()
    first = render_children(client_inputs(endpoints=eps))
    again = render_children(client_inputs(endpoints=list(reversed(eps))))
    assert first.deployment == again.deployment
    assert first.config_map == again.config_map
    assert first.config_hash == again.config_hash


def test_a_new_endpoint_changes_the_pod_template() -> None:
    before = render_children(client_inputs(endpoints=[NGINX_ENDPOINT]))
    after = render_children(client_inputs(endpoints=_three_endpoints()))
    assert before.config_hash != after.config_hash
    assert before.deployment["spec"]["template"] != after.deployment["spec"]["template"]


def test_no_pinned_endpoints_no_host_aliases() -> None:
    spec = pod_spec(make_inputs(endpoints=[]))
    assert "hostAliases" not in spec


# -- rollout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maximum", "minimum", "surge", "unavailable"),
    [
        (200, 0, "100%", "100%"),  # the tutorial's
        (200, 100, "100%", "0%"),  # the ECS default
        (150, 50, "50%", "50%"),
        (100, 50, "0%", "50%"),
        (100, 100, 1, "0%"),  # Kubernetes refuses 0/0: keep the healthy floor, surge one pod
    ],
)
def test_percentages_become_max_surge_and_max_unavailable(
    maximum: int, minimum: int, surge: int | str, unavailable: str
) -> None:
    spec = dict(
        NGINX_SPEC, deploymentConfiguration={"maximumPercent": maximum, "minimumHealthyPercent": minimum}
    )
    dep = render_children(make_inputs(spec)).deployment
    k8s_validate(dep)
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
    }


def test_default_deployment_configuration() -> None:
    dep = render_children(client_inputs()).deployment
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "100%", "maxUnavailable": "0%"}
    assert dep["spec"]["replicas"] == 2


def test_desired_count_alone_does_not_change_the_pod_template() -> None:
    one = render_children(make_inputs())
    five = render_children(make_inputs(dict(NGINX_SPEC, desiredCount=5)))
    assert one.deployment["spec"]["template"] == five.deployment["spec"]["template"]
    assert one.config_map == five.config_map
    assert five.deployment["spec"]["replicas"] == 5


def test_service_connect_disabled_renders_the_task_only() -> None:
    spec = dict(CLIENT_SPEC, serviceConnectConfiguration={"enabled": False})
    children = render_children(make_inputs(spec, name="plain", endpoints=[]))
    k8s_validate(children.deployment)
    assert children.config_map is None
    assert children.services == []
    pod = children.deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["curl"]
    assert "initContainers" not in pod
    assert "hostAliases" not in pod


def test_long_service_names_give_valid_labels() -> None:
    name = "checkout-" + "x" * 90
    children = render_children(make_inputs(name=name, endpoints=[]))
    dep = children.deployment
    k8s_validate(dep)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(is_label_value(v) for v in labels.values())
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels[DEPLOYMENT_LABEL] != labels[SERVICE_LABEL]


def test_no_privileged_init_container_when_nothing_needs_redirecting() -> None:
    # A client with nothing pinned yet: no alias to redirect, no port served.
    spec = pod_spec(client_inputs(endpoints=[]))
    assert "initContainers" not in spec
    # A server reaching nothing whose endpoint bypasses interception with ingressPortOverride.
    nginx = dict(NGINX_SPEC)
    nginx["serviceConnectConfiguration"] = {
        "enabled": True,
        "services": [{"portName": "nginx", "clientAliases": [{"port": 80}], "ingressPortOverride": 8080}],
    }
    spec = pod_spec(make_inputs(nginx, endpoints=[]))
    assert "initContainers" not in spec
    # Served without an override: non-local callers of port 80 must be redirected.
    assert [c["name"] for c in pod_spec(make_inputs(endpoints=[]))["initContainers"]] == ["sc-intercept"]


def _restricted_problems(container: dict[str, Any]) -> list[str]:
    """The container-level checks of the "restricted" Pod Security Standard (Kubernetes docs, v1.25+)."""
    sc = container.get("securityContext", {})
    problems = []
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") == 0:
        problems.append("runAsNonRoot")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation")
    caps = sc.get("capabilities", {})
    if caps.get("drop") != ["ALL"] or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
        problems.append("capabilities")
    if sc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile")
    if sc.get("privileged"):
        problems.append("privileged")
    return problems


def test_listeners_mode_pods_can_meet_the_restricted_pod_security_standard() -> None:
    """The no-privilege mode exists for namespaces that enforce "restricted": everything we inject passes
    (the task's own containers are the user's to harden)."""
    spec = pod_spec(make_inputs(interception="listeners"))
    injected = [
        c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"].startswith("sc-")
    ]
    assert [c["name"] for c in injected] == ["sc-proxy"]
    assert _restricted_problems(injected[0]) == []
    assert {next(iter(k for k in v if k != "name")) for v in spec["volumes"]} <= {"configMap", "emptyDir"}
    # In the redirect mode the init container needs NET_ADMIN: that namespace must allow "privileged".
    assert "capabilities" in _restricted_problems(container(pod_spec(make_inputs()), "sc-intercept"))
