"""Properties of every rendering, over generated services and pinned lists (hypothesis, bounded).

Whatever the task's ports, overrides, protocols, pinned endpoints, mode and server version: the objects
pass the Kubernetes schema, the ConfigMap's file passes the sidecar's own model, the proxy's ports collide
with nothing in the pod, and rendering twice gives the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sc_operator.render import RenderError, render_children, render_violations
from sc_proxy.config import ProxyConfig
from support.render import endpoint, k8s_validate, make_inputs

names = st.from_regex(r"\A[a-z][a-z0-9_-]{0,20}\Z")
ports = st.integers(1, 65535)
protocols = st.sampled_from([None, "http", "http2", "grpc"])


@st.composite
def services(draw: st.DrawFn) -> dict[str, Any]:
    """A ConnectService spec: 1-3 containers, 0-3 named ports served, optional overrides."""
    container_count = draw(st.integers(1, 3))
    container_ports = draw(st.lists(ports, min_size=0, max_size=6, unique=True))
    port_names = draw(
        st.lists(names, min_size=len(container_ports), max_size=len(container_ports), unique=True)
    )
    containers: list[dict[str, Any]] = [
        {"name": f"c{i}", "image": "busybox", "cpu": draw(st.integers(0, 4096))}
        for i in range(container_count)
    ]
    for i, (port, pname) in enumerate(zip(container_ports, port_names, strict=True)):
        pm: dict[str, Any] = {"name": pname, "containerPort": port}
        proto = draw(protocols)
        if proto:
            pm["appProtocol"] = proto
        containers[i % container_count].setdefault("portMappings", []).append(pm)
    served = draw(st.lists(st.sampled_from(port_names), unique=True, max_size=3)) if port_names else []
    sc_services = []
    for pname in served:
        svc: dict[str, Any] = {"portName": pname, "clientAliases": [{"port": draw(ports)}]}
        if draw(st.booleans()):
            svc["ingressPortOverride"] = draw(ports)
        sc_services.append(svc)
    return {
        "desiredCount": draw(st.integers(0, 10)),
        "deploymentConfiguration": {
            "maximumPercent": draw(st.integers(100, 400)),
            "minimumHealthyPercent": draw(st.integers(0, 100)),
        },
        "expectedRequestsPerSecond": draw(st.integers(0, 2000)),
        "taskDefinition": {"family": "gen", "memory": "2048", "containerDefinitions": containers},
        "serviceConnectConfiguration": {"enabled": True, "namespace": "ns", "services": sc_services},
    }


@st.composite
def pinned_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    discovery = draw(st.lists(names, unique=True, max_size=6))
    out = []
    for d in discovery:
        # One clientAlias per discoveryName (rule client-alias: ECS allows exactly one).
        dns = draw(st.from_regex(r"\A[a-z][a-z0-9.-]{0,15}[a-z0-9]\Z"))
        out.append(endpoint(d, dns, draw(ports), draw(protocols), f"owner-{d}"))
    # (dnsName, port) is unique in a namespace, and no dnsName is another endpoint's discoveryName
    # (validation guarantees both: client-alias-duplicate, client-name-collision).
    seen: set[tuple[str, int]] = set()
    unique = []
    for ep in out:
        key = (ep["dnsName"], ep["port"])
        if ep["dnsName"] in discovery and ep["dnsName"] != ep["discoveryName"]:
            continue
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    return unique


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    services(),
    pinned_lists(),
    st.sampled_from(["redirect", "listeners"]),
    st.sampled_from([(1, 20), (1, 29)]),
)
def test_every_rendering_is_valid(
    spec: dict[str, Any], pinned: list[dict[str, Any]], mode: str, version: tuple[int, int]
) -> None:
    inputs = make_inputs(spec, name="gen", endpoints=pinned, interception=mode, version=version)  # type: ignore[arg-type]
    violations = render_violations(inputs)
    event(f"violations: {sorted({v.rule for v in violations})}")
    event(f"served: {len(inputs.served())}, aliases: {len(inputs.pinned)}")
    if violations:
        try:
            render_children(inputs)
        except RenderError:
            return
        raise AssertionError("violations reported but rendering succeeded")
    children = render_children(inputs)
    schema = "1.29" if version >= (1, 29) else "1.25"
    k8s_validate(children.deployment, schema)
    for svc in children.services:
        k8s_validate(svc, schema)
    assert children.config_map is not None
    k8s_validate(children.config_map, schema)
    config = ProxyConfig.model_validate(json.loads(children.config_map["data"]["proxy.json"]))

    pod = children.deployment["spec"]["template"]["spec"]
    task_ports = {
        p["containerPort"] for c in pod["containers"] if c["name"] != "sc-proxy" for p in c.get("ports", [])
    }
    proxy_ports = [config.admin.port, config.admin.local_port, *(i.port for i in config.ingress)]
    if config.egress is not None and config.egress.port is not None:
        proxy_ports.append(config.egress.port)
    assert len(set(proxy_ports)) == len(proxy_ports)
    assert not set(proxy_ports) & task_ports
    if mode == "listeners":
        assert not {a.port for a in config.aliases} & (task_ports | set(proxy_ports))
    assert render_children(inputs) == children
