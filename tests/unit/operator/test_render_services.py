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
    # The target is the proxy's named ingress port, so each pod's endpoint carries that pod's own port.
    proxy_ports = {p["name"]: p["containerPort"] for p in container(pod_spec(inputs), "sc-proxy")["ports"]}
    assert proxy_ports[port["targetPort"]] == port["port"] == 15100


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
    ports = {p["targetPort"] for s in services for p in s["spec"]["ports"]}
    assert len(ports) == 2


def test_client_only_service_has_no_headless_service() -> None:
    assert render_children(client_inputs()).services == []
