"""Render-time rules: the no-privilege (listeners) mode refuses a task port that collides with an alias."""

from __future__ import annotations

import pytest

from sc_operator.render import RenderError, render_children, render_violations
from sc_operator.render.checks import RULE_HOSTNAME, RULE_INGRESS_OVERRIDE, RULE_LISTENER_COLLISION
from support.render import CLIENT_SPEC, NGINX_ENDPOINT, NGINX_SPEC, endpoint, make_inputs, with_container


def _web_on_80() -> dict[str, object]:
    """A client service (not nginx) whose own container listens on 80 and must reach nginx:80."""
    return with_container(CLIENT_SPEC, portMappings=[{"name": "web", "containerPort": 80}])


def test_listeners_mode_refuses_a_port_colliding_with_an_alias_naming_both() -> None:
    inputs = make_inputs(_web_on_80(), name="shop", interception="listeners")
    [v] = render_violations(inputs)
    assert v.rule == RULE_LISTENER_COLLISION
    assert v.field == "spec.taskDefinition.containerDefinitions[0].portMappings[0].containerPort"
    assert "containerPort 80" in v.message
    assert "client alias nginx:80" in v.message
    with pytest.raises(RenderError, match=RULE_LISTENER_COLLISION):
        render_children(inputs)


def test_redirect_mode_has_no_such_collision() -> None:
    inputs = make_inputs(_web_on_80(), name="shop", interception="redirect")
    assert render_violations(inputs) == []
    render_children(inputs)


def test_listeners_mode_without_colliding_ports_is_fine() -> None:
    eps = [NGINX_ENDPOINT, endpoint("redis", "redis", 6379, None, "redis")]
    inputs = make_inputs(with_container(CLIENT_SPEC, portMappings=[{"containerPort": 8080}]), name="shop",
                         endpoints=eps, interception="listeners")  # fmt: skip
    assert render_violations(inputs) == []


def test_listeners_mode_refuses_an_ingress_override_on_an_alias_port() -> None:
    spec = dict(NGINX_SPEC)
    spec["serviceConnectConfiguration"] = {
        "enabled": True,
        "services": [{"portName": "nginx", "clientAliases": [{"port": 80}], "ingressPortOverride": 6379}],
    }
    inputs = make_inputs(spec, endpoints=[NGINX_ENDPOINT, endpoint("redis", "redis", 6379, None, "redis")],
                         interception="listeners")  # fmt: skip
    [v] = render_violations(inputs)
    assert v.field == "spec.serviceConnectConfiguration.services[0].ingressPortOverride"
    assert "6379" in v.message
    assert "redis:6379" in v.message


def test_ingress_override_on_a_task_port_is_refused() -> None:
    spec = dict(NGINX_SPEC)
    spec["serviceConnectConfiguration"] = {
        "enabled": True,
        "services": [{"portName": "nginx", "clientAliases": [{"port": 80}], "ingressPortOverride": 80}],
    }
    [v] = render_violations(make_inputs(spec))
    assert v.rule == RULE_INGRESS_OVERRIDE
    assert "ingressPortOverride 80" in v.message
    assert "portMappings[0].containerPort" in v.message


def test_two_endpoints_may_not_share_an_ingress_override() -> None:
    """The proxy binds each override once: a second endpoint on the same port is refused at render time,
    naming both, instead of the rendering failing half-way (found by test_every_rendering_is_valid)."""
    spec = with_container(
        NGINX_SPEC,
        portMappings=[
            {"name": "nginx", "containerPort": 80, "appProtocol": "http"},
            {"name": "admin", "containerPort": 8080, "appProtocol": "http"},
        ],
    )
    spec["serviceConnectConfiguration"] = {
        "enabled": True,
        "services": [
            {"portName": "nginx", "clientAliases": [{"port": 80}], "ingressPortOverride": 15000},
            {"portName": "admin", "clientAliases": [{"port": 8080}], "ingressPortOverride": 15000},
        ],
    }
    [v] = render_violations(make_inputs(spec))
    assert v.rule == RULE_INGRESS_OVERRIDE
    assert v.field == "spec.serviceConnectConfiguration.services[1].ingressPortOverride"
    assert "services[0].ingressPortOverride" in v.message


def test_hostname_must_be_a_dns_label() -> None:
    [v] = render_violations(make_inputs(with_container(NGINX_SPEC, hostname="Web_1")))
    assert v.rule == RULE_HOSTNAME
    assert v.field == "spec.taskDefinition.containerDefinitions[0].hostname"
    assert render_violations(make_inputs(with_container(NGINX_SPEC, hostname="1web"))) == []
