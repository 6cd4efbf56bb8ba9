"""Headless Services: one per served endpoint, how clients find a service's ready tasks."""

from __future__ import annotations

from typing import Any

from sc_operator.render import headless_service_name, render_children, render_proxy_config
from sc_operator.render.names import is_dns1035_label
from support.render import NGINX_SPEC, client_inputs, container, k8s_validate, make_inputs, pod_spec


def _two_endpoint_spec() -> dict[str, Any]:
    spec = dict(NGINX_SPEC)
    td = dict(spec["taskDefinition"])
    [web] = td["containerDefinitions"]
    web = dict(web, portMappings=[
        {"name": "nginx", "containerPort": 80, "appProtocol": "http"},
        {"name": "metrics_port", "containerPort": 9100},
    ])  # fmt: skip
    td["containerDefinitions"] = [web]
    spec["taskDefinition"] = td
    spec["serviceConnectConfiguration"] = {
        "enabled": True,
        "namespace": "service-connect",
        "services": [
            {"portName": "nginx", "clientAliases": [{"port": 80}]},
            {
                "portName": "metrics_port",
                "discoveryName": "_nginx_metrics",
                "clientAliases": [{"port": 9100}],
            },
        ],
    }
    return spec


def test_nginx_headless_service() -> None:
    inputs = make_inputs()
    [svc] = render_children(inputs).services
    k8s_validate(svc)
    name = svc["metadata"]["name"]
    assert is_dns1035_label(name)
    assert name == headless_service_name("nginx", "service-connect")
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "ConnectService"
    spec = svc["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is False
    assert spec["selector"] == {
        "app.kubernetes.io/managed-by": "serviceconnect",
        "serviceconnect.dev/service": "nginx",
    }
    [port] = spec["ports"]
    assert port["name"] == "sc-http"
    assert port["protocol"] == "TCP"
    # Seed ("Networking"): client proxies connect to the server's proxy on the containerPort, which the
    # server pod's PREROUTING rule hands to the ingress listener. The target is the app's named port, so
    # each pod's endpoint carries that pod's own containerPort.
    app_ports = {p["name"]: p["containerPort"] for p in container(pod_spec(inputs), "webserver")["ports"]}
    assert app_ports[port["targetPort"]] == port["port"] == 80
    [ingress] = render_proxy_config(inputs).ingress
    assert (ingress.intercept_port, ingress.port) == (80, 15100)


def _with_override(override: int) -> dict[str, Any]:
    spec = dict(NGINX_SPEC)
    scc = dict(spec["serviceConnectConfiguration"])
    scc["services"] = [dict(scc["services"][0], ingressPortOverride=override)]
    spec["serviceConnectConfiguration"] = scc
    return spec


def test_with_ingress_port_override_clients_dial_the_override_where_the_proxy_listens() -> None:
    inputs = make_inputs(_with_override(8443))
    [svc] = render_children(inputs).services
    [port] = svc["spec"]["ports"]
    proxy_ports = {p["name"]: p["containerPort"] for p in container(pod_spec(inputs), "sc-proxy")["ports"]}
    assert proxy_ports[port["targetPort"]] == port["port"] == 8443
    [ingress] = render_proxy_config(inputs).ingress
    # Nothing intercepted: callers of the containerPort reach the app directly, as in ECS.
    assert (ingress.port, ingress.intercept_port) == (8443, None)


def test_listeners_mode_clients_dial_the_ingress_listener() -> None:
    # No iptables in the server pod: nothing can hand the containerPort to the proxy.
    inputs = make_inputs(interception="listeners")
    [svc] = render_children(inputs).services
    [port] = svc["spec"]["ports"]
    proxy_ports = {p["name"]: p["containerPort"] for p in container(pod_spec(inputs), "sc-proxy")["ports"]}
    assert proxy_ports[port["targetPort"]] == port["port"] == 15100
    [ingress] = render_proxy_config(inputs).ingress
    assert (ingress.port, ingress.intercept_port) == (15100, None)


def test_headless_service_matches_what_clients_resolve() -> None:
    """The name a client's proxy resolves (from the pinned endpoint) is the Service the server renders."""
    [svc] = render_children(make_inputs()).services
    client = render_proxy_config(client_inputs())
    dns = client.endpoint("nginx").discovery.dns
    assert dns is not None
    assert dns.name == f"{svc['metadata']['name']}.default.svc.cluster.local"
    assert dns.srv_name == f"_{svc['spec']['ports'][0]['name']}._tcp.{dns.name}"


def test_one_service_per_endpoint_names_valid_for_underscored_discovery_names() -> None:
    services = render_children(make_inputs(_two_endpoint_spec())).services
    assert len(services) == 2
    for svc in services:
        k8s_validate(svc)
        assert is_dns1035_label(svc["metadata"]["name"])
    assert services[1]["metadata"]["annotations"]["serviceconnect.dev/discovery-name"] == "_nginx_metrics"
    assert services[1]["spec"]["ports"][0]["name"] == "sc-tcp"
    assert len({s["metadata"]["name"] for s in services}) == 2
    # metrics_port is no valid Kubernetes port name, so its Service targets the number.
    assert [p["targetPort"] for s in services for p in s["spec"]["ports"]] == ["nginx", 9100]


def test_client_only_service_has_no_headless_service() -> None:
    assert render_children(client_inputs()).services == []
