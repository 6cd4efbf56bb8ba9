"""The ConfigMap and the ProxyConfig it holds: parsed back with the sidecar's own model and rules."""

from __future__ import annotations

import json

import pytest

from sc_operator.render import config_hash, render_children, render_proxy_config
from sc_operator.render.names import CONFIG_HASH_ANNOTATION
from sc_operator.render.proxy_config import config_text
from sc_operator.settings import OperatorSettings
from sc_proxy import iptables
from sc_proxy.config import ProxyConfig, load_config
from support.render import (
    NGINX_ENDPOINT,
    NGINX_SPEC,
    client_inputs,
    container,
    endpoint,
    k8s_validate,
    make_inputs,
    pod_spec,
)


def _file(children_config_map: dict[str, object]) -> ProxyConfig:
    data = children_config_map["data"]
    assert isinstance(data, dict)
    return ProxyConfig.model_validate(json.loads(data["proxy.json"]))


def test_config_map_is_immutable_owned_by_the_connect_deployment_and_valid() -> None:
    children = render_children(make_inputs())
    cm = children.config_map
    assert cm is not None
    k8s_validate(cm)
    assert cm["immutable"] is True
    assert cm["metadata"]["name"] == "nginx-0123456789"
    assert cm["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "serviceconnect.dev/v1alpha1",
            "kind": "ConnectDeployment",
            "name": "nginx-0123456789",
            "uid": "66666666-7777-8888-9999-000000000000",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert cm["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == children.config_hash
    assert _file(cm) == children.proxy_config
    # The file is canonical: the parsed model dumps back to the same bytes, hence the same hash.
    assert children.proxy_config is not None
    assert config_text(children.proxy_config) == cm["data"]["proxy.json"]
    assert config_hash(children.proxy_config) == children.config_hash


def test_a_large_namespace_fits_in_one_config_map() -> None:
    """Every endpoint of the namespace is pinned into one ConfigMap, which Kubernetes caps at 1 MiB."""
    eps = [
        endpoint(f"service-{i:04d}", f"service-{i:04d}.shop", 8080, "http", f"svc-{i}") for i in range(2000)
    ]
    children = render_children(client_inputs(endpoints=eps))
    assert children.config_map is not None
    size = len(children.config_map["data"]["proxy.json"].encode())
    assert size < 1024 * 1024, size
    assert children.proxy_config is not None
    assert len(children.proxy_config.endpoints) == 2000


def test_the_file_loads_with_the_sidecars_loader(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    cm = render_children(client_inputs()).config_map
    assert cm is not None
    path = tmp_path / "proxy.json"
    path.write_text(cm["data"]["proxy.json"])
    assert load_config(path).version == "client-0123456789"


def test_nginx_config_serves_its_endpoint_and_reaches_the_namespace() -> None:
    config = render_proxy_config(make_inputs())
    assert config.version == "nginx-0123456789"
    assert (config.service.namespace, config.service.name) == ("default", "nginx")
    assert (config.admin.address, config.admin.port) == ("0.0.0.0", 9901)
    assert (config.admin.local_address, config.admin.local_port) == ("127.0.0.1", 9902)
    [ingress] = config.ingress
    assert ingress.discovery_name == "nginx"
    assert (ingress.port, ingress.app_port, ingress.intercept_port) == (15100, 80, 80)
    assert ingress.app_protocol == "http"
    assert config.egress is not None
    assert (config.egress.mode, config.egress.port) == ("redirect", 15001)
    [ep] = config.endpoints
    assert ep.name == "nginx"
    assert ep.app_protocol == "http"
    assert ep.discovery.dns is not None
    headless = ep.discovery.dns.name.split(".")[0]
    assert ep.discovery.dns.name == f"{headless}.default.svc.cluster.local"
    assert ep.discovery.dns.srv_name == f"_sc-http._tcp.{headless}.default.svc.cluster.local"
    assert ep.discovery.dns.resolver is None
    assert [(a.address, a.port, a.endpoint) for a in config.aliases] == [("127.255.0.1", 80, "nginx")]


def test_client_only_config_has_no_ingress() -> None:
    config = render_proxy_config(client_inputs())
    assert config.ingress == []
    assert [a.endpoint for a in config.aliases] == ["nginx"]


def test_a_server_proxy_lingers_after_sigterm_and_a_client_only_one_does_not() -> None:
    """Callers keep dialling a stopping server task until they re-resolve: its proxy keeps the address
    refusing for the setting's time. Nobody dials a client-only task: it exits as soon as it is idle."""
    assert render_proxy_config(make_inputs()).linger_seconds == 12.0
    assert render_proxy_config(client_inputs()).linger_seconds == 0.0
    settings = OperatorSettings(proxy_linger_seconds=3)
    assert render_proxy_config(make_inputs(settings=settings)).linger_seconds == 3.0
    off = OperatorSettings(proxy_linger_seconds=0)
    assert render_proxy_config(make_inputs(settings=off)).linger_seconds == 0


def test_endpoints_are_found_in_their_owners_namespace_with_the_settings_domain_and_resolver() -> None:
    settings = OperatorSettings(cluster_domain="k8s.example", dns_resolver="10.96.0.10")
    eps = [endpoint("db", "db.shop", 5432, None, "postgres", ns="data"), NGINX_ENDPOINT]
    config = render_proxy_config(client_inputs(endpoints=eps, settings=settings))
    db = config.endpoint("db")
    assert db.app_protocol == "tcp"
    assert db.discovery.dns is not None
    assert db.discovery.dns.name.endswith(".data.svc.k8s.example")
    assert db.discovery.dns.srv_name is not None
    assert db.discovery.dns.srv_name.startswith("_sc-tcp._tcp.")
    assert db.discovery.dns.resolver == "10.96.0.10"


def test_one_upstream_per_discovery_name_one_alias_per_name_and_port() -> None:
    eps = [
        endpoint("api", "api", 8080, "grpc", "api"),
        endpoint("api", "api.v2", 80, "grpc", "api"),
        NGINX_ENDPOINT,
    ]
    config = render_proxy_config(client_inputs(endpoints=eps))
    assert [e.name for e in config.endpoints] == ["api", "nginx"]
    # One address per endpoint, with each of its alias ports on it (api's names all resolve to .1).
    assert [(a.address, a.port, a.endpoint) for a in config.aliases] == [
        ("127.255.0.1", 80, "api"),
        ("127.255.0.1", 8080, "api"),
        ("127.255.0.2", 80, "nginx"),
    ]


@pytest.mark.parametrize("interception", ["redirect", "listeners"])
def test_port_name_discovery_name_and_dns_name_share_the_alias_in_both_modes(interception: str) -> None:
    eps = [endpoint("web-disc", "web.shop", 8080, "http", "web", port_name="web-port"), NGINX_ENDPOINT]
    inputs = client_inputs(endpoints=eps, interception=interception)
    config = render_proxy_config(inputs)
    assert [(a.address, a.port, a.endpoint) for a in config.aliases] == [
        ("127.255.0.1", 80, "nginx"),
        ("127.255.0.2", 8080, "web-disc"),
    ]
    assert config.egress is not None
    assert config.egress.mode == interception
    assert pod_spec(inputs)["hostAliases"] == [
        {"ip": "127.255.0.1", "hostnames": ["nginx"]},
        {"ip": "127.255.0.2", "hostnames": ["web-disc", "web-port", "web.shop"]},
    ]


def test_timeouts_and_access_log_come_from_the_service() -> None:
    spec = dict(
        NGINX_SPEC,
        serviceConnectConfiguration={
            "enabled": True,
            "namespace": "service-connect",
            "services": [
                {
                    "portName": "nginx",
                    "clientAliases": [{"port": 80}],
                    "timeout": {"perRequestTimeoutSeconds": 0, "idleTimeoutSeconds": 60},
                }
            ],
            "logConfiguration": {"logDriver": "awslogs"},
            "accessLogConfiguration": {"format": "JSON"},
        },
    )
    config = render_proxy_config(make_inputs(spec))
    assert config.ingress[0].timeouts.per_request_timeout_seconds == 0
    assert config.ingress[0].timeouts.idle_timeout_seconds == 60
    assert config.access_log is not None
    assert (config.access_log.format, config.access_log.include_query_parameters) == ("JSON", "DISABLED")


# -- interception rules match the config -----------------------------------------------------------


def test_redirect_rules_use_the_rendered_ports() -> None:
    config = render_proxy_config(make_inputs())
    rules = iptables.render(config)
    assert rules.chains[iptables.EGRESS_CHAIN] == [
        ["-d", "127.255.0.0/16", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001"]
    ]
    # Non-local traffic to nginx's containerPort 80 goes through its ingress listener.
    assert rules.chains[iptables.INGRESS_CHAIN] == [
        ["-p", "tcp", "--dport", "80", "-j", "REDIRECT", "--to-ports", "15100"]
    ]
    proxy_ports = {p["containerPort"] for p in container(pod_spec(make_inputs()), "sc-proxy")["ports"]}
    assert {config.admin.port, config.ingress[0].port} <= proxy_ports


def test_ingress_port_override_wins_and_is_not_intercepted() -> None:
    spec = dict(
        NGINX_SPEC,
        serviceConnectConfiguration={
            "enabled": True,
            "namespace": "service-connect",
            "services": [{"portName": "nginx", "clientAliases": [{"port": 80}], "ingressPortOverride": 8443}],
        },
    )
    config = render_proxy_config(make_inputs(spec))
    assert config.ingress[0].port == 8443
    assert config.ingress[0].intercept_port is None
    assert iptables.render(config).chains[iptables.INGRESS_CHAIN] == []


def test_listeners_mode_config() -> None:
    config = render_proxy_config(client_inputs(interception="listeners"))
    assert config.egress is not None
    assert config.egress.mode == "listeners"
    rules = iptables.render(config)
    assert rules.chains[iptables.EGRESS_CHAIN] == []
    assert rules.chains[iptables.INGRESS_CHAIN] == []


def test_listeners_mode_drops_only_the_services_own_colliding_alias() -> None:
    """nginx serves port 80 and is aliased nginx:80; in listeners mode the proxy cannot bind 127.255.0.1:80
    while nginx listens on *:80, and nginx reaches itself directly, so that alias alone is left out."""
    redis = endpoint("redis", "redis", 6379, None, "redis")
    inputs = make_inputs(endpoints=[NGINX_ENDPOINT, redis], interception="listeners")
    config = render_proxy_config(inputs)
    assert [(a.address, a.port, a.endpoint) for a in config.aliases] == [("127.255.0.1", 6379, "redis")]
    assert config.ingress[0].intercept_port is None
    assert pod_spec(inputs)["hostAliases"] == [{"ip": "127.255.0.1", "hostnames": ["redis"]}]
    # In redirect mode nothing collides, so nginx keeps its alias.
    config = render_proxy_config(make_inputs(endpoints=[NGINX_ENDPOINT, redis]))
    assert [a.endpoint for a in config.aliases] == ["nginx", "redis"]


@pytest.mark.parametrize("mode", ["redirect", "listeners"])
def test_every_mode_renders_a_file_the_sidecar_accepts(mode: str) -> None:
    for inputs in (make_inputs(interception=mode), client_inputs(interception=mode)):  # type: ignore[arg-type]
        cm = render_children(inputs).config_map
        assert cm is not None
        _file(cm)


def test_clients_enforce_the_servers_timeouts() -> None:
    """A server that disables the per-request timeout (long polling) must not be cut at 15 s by its
    callers' proxies: the pinned endpoint carries the owner's timeouts to every client."""
    ep = dict(NGINX_ENDPOINT, perRequestTimeoutSeconds=0, idleTimeoutSeconds=600)
    config = render_proxy_config(client_inputs(endpoints=[ep]))
    timeouts = config.endpoint("nginx").timeouts
    assert timeouts.per_request_timeout_seconds == 0
    assert timeouts.idle_timeout_seconds == 600
    # Unset stays unset: the sidecar's defaults per protocol apply.
    config = render_proxy_config(client_inputs())
    assert config.endpoint("nginx").timeouts.per_request_timeout_seconds is None


def test_registered_endpoints_carry_the_timeouts() -> None:
    from sc_operator.api import ConnectServiceSpec, ServiceRef
    from sc_operator.validation import effective_endpoints

    spec = dict(NGINX_SPEC)
    spec["serviceConnectConfiguration"] = {
        "enabled": True,
        "services": [
            {"portName": "nginx", "clientAliases": [{"port": 80}], "timeout": {"perRequestTimeoutSeconds": 0}}
        ],
    }
    [ep] = effective_endpoints(
        ConnectServiceSpec.model_validate(spec), ServiceRef(namespace="default", name="nginx")
    )
    assert ep.per_request_timeout_seconds == 0
    assert ep.idle_timeout_seconds is None
