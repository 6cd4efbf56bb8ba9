"""What makes the proxies' metrics usable: the ServiceName/ClusterName the proxy is told, and the pod
annotations that let Prometheus find its metrics port."""

from __future__ import annotations

from typing import Any

from sc_operator.render import render_children
from sc_operator.render.names import (
    PROMETHEUS_PATH_ANNOTATION,
    PROMETHEUS_PORT_ANNOTATION,
    PROMETHEUS_SCRAPE_ANNOTATION,
)
from sc_operator.settings import OperatorSettings
from support.render import CLIENT_SPEC, NGINX_SPEC, client_inputs, container, make_inputs, with_container


def _template(children: Any) -> dict[str, Any]:
    template: dict[str, Any] = children.deployment["spec"]["template"]
    return template


def test_the_proxy_names_its_service_and_the_configured_cluster() -> None:
    config = render_children(make_inputs()).proxy_config
    assert config is not None
    assert (config.service.name, config.service.cluster) == ("nginx", "kubernetes")
    settings = OperatorSettings(cluster_name="prod-eu")
    client = render_children(client_inputs(settings=settings)).proxy_config
    assert client is not None
    # On egress ServiceName is the calling service: the client's own name, whatever it calls.
    assert (client.service.name, client.service.cluster) == ("client", "prod-eu")


def test_pods_with_a_proxy_are_annotated_with_its_metrics_port() -> None:
    children = render_children(make_inputs())
    annotations = _template(children)["metadata"]["annotations"]
    assert annotations[PROMETHEUS_SCRAPE_ANNOTATION] == "true"
    assert annotations[PROMETHEUS_PATH_ANNOTATION] == "/metrics"
    assert annotations[PROMETHEUS_PORT_ANNOTATION] == "9901"
    assert children.proxy_config is not None
    assert children.proxy_config.admin.port == 9901  # the port serving /metrics
    proxy = container(_template(children)["spec"], "sc-proxy")
    assert 9901 in {p["containerPort"] for p in proxy["ports"]}


def test_the_annotation_follows_the_port_when_the_task_already_uses_it() -> None:
    spec = with_container(
        NGINX_SPEC,
        portMappings=[
            {"name": "nginx", "containerPort": 80, "protocol": "tcp", "appProtocol": "http"},
            {"name": "other", "containerPort": 9901, "protocol": "tcp"},
        ],
    )
    children = render_children(make_inputs(spec))
    assert children.proxy_config is not None
    moved = children.proxy_config.admin.port
    assert moved != 9901
    assert _template(children)["metadata"]["annotations"][PROMETHEUS_PORT_ANNOTATION] == str(moved)


def test_no_scrape_annotations_when_turned_off_or_without_a_proxy() -> None:
    off = render_children(make_inputs(settings=OperatorSettings(prometheus_annotations=False)))
    assert PROMETHEUS_SCRAPE_ANNOTATION not in _template(off)["metadata"]["annotations"]
    plain = dict(CLIENT_SPEC, serviceConnectConfiguration={"enabled": False})
    children = render_children(make_inputs(plain, name="plain", endpoints=[]))
    annotations = _template(children)["metadata"]["annotations"]
    assert not any(k.startswith("prometheus.io/") for k in annotations)
