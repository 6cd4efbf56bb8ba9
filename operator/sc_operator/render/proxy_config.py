"""The sidecar's configuration for one rollout (a :class:`sc_proxy.config.ProxyConfig`).

Endpoints are the pinned list: each distinct discoveryName becomes one upstream whose tasks the proxy finds
through the owner's headless Service (A records for addresses, SRV for the ingress port); each (dnsName,
port) becomes an alias on that dnsName's VIP. Each served endpoint becomes an ingress listener that forwards
to the app on 127.0.0.1:containerPort.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sc_operator.api.common import Endpoint
from sc_operator.render.inputs import RenderInputs
from sc_operator.render.names import headless_dns_name, headless_service_name, srv_name
from sc_operator.render.ports import PortPlan, ServedPort, plan_ports
from sc_operator.render.vips import assign_vips
from sc_proxy.config import (
    AccessLogConfig,
    AdminConfig,
    Alias,
    Discovery,
    DnsDiscovery,
    EgressConfig,
    Ingress,
    ProxyConfig,
    ServiceIdentity,
    Timeouts,
)
from sc_proxy.config import Endpoint as ProxyEndpoint


def served_ports(inputs: RenderInputs) -> list[ServedPort]:
    return [ServedPort(s.discovery_name, s.container_port, s.ingress_port_override) for s in inputs.served()]


def port_plan(inputs: RenderInputs) -> PortPlan:
    """The proxy's ports for this rendering (see :mod:`sc_operator.render.ports`)."""
    settings = inputs.settings
    alias_ports = {ep.port for ep in inputs.pinned} if inputs.interception == "listeners" else set()
    return plan_ports(
        [port for port, _ in inputs.task_ports()],
        served_ports(inputs),
        admin_preferred=settings.admin_port,
        egress_preferred=settings.egress_port,
        ingress_base=settings.ingress_port_base,
        also_avoid=alias_ports,
    )


def endpoint_discovery(
    ep: Endpoint, connect_namespace: str, cluster_domain: str, resolver: str
) -> DnsDiscovery:
    """Where a pinned endpoint's tasks are found: its owner's headless Service."""
    headless = headless_service_name(ep.discovery_name, connect_namespace)
    return DnsDiscovery(
        name=headless_dns_name(headless, ep.service.namespace, cluster_domain),
        srv_name=srv_name(headless, ep.service.namespace, cluster_domain, ep.app_protocol or "tcp"),
        resolver=resolver or None,
    )


def render_proxy_config(inputs: RenderInputs, plan: PortPlan | None = None) -> ProxyConfig:
    """The ProxyConfig of this rollout (pure)."""
    plan = plan or port_plan(inputs)
    settings = inputs.settings
    scc = inputs.service_connect
    pinned = sorted(inputs.pinned, key=lambda e: (e.discovery_name, e.dns_name, e.port))

    endpoints: list[ProxyEndpoint] = []
    seen: set[str] = set()
    for ep in pinned:
        if ep.discovery_name in seen:
            continue
        seen.add(ep.discovery_name)
        endpoints.append(
            ProxyEndpoint(
                name=ep.discovery_name,
                app_protocol=ep.app_protocol or "tcp",
                discovery=Discovery(
                    dns=endpoint_discovery(
                        ep, inputs.connect_namespace, settings.cluster_domain, settings.dns_resolver
                    )
                ),
            )
        )
    vips = assign_vips((ep.dns_name, ep.port) for ep in pinned)
    aliases = [
        Alias(address=vips[(ep.dns_name, ep.port)], port=ep.port, endpoint=ep.discovery_name)
        for ep in sorted(pinned, key=lambda e: (e.dns_name, e.port))
    ]
    egress: EgressConfig | None = None
    if aliases:
        if inputs.interception == "redirect":
            egress = EgressConfig(mode="redirect", address="127.0.0.1", port=plan.egress)
        else:
            egress = EgressConfig(mode="listeners")

    ingress = []
    for s in inputs.served():
        # Without iptables (listeners mode) nothing can be intercepted; with an override ECS sends no
        # interceptPort, so callers of the containerPort reach the app directly.
        intercept = None
        if inputs.interception == "redirect" and s.ingress_port_override is None:
            intercept = s.container_port
        ingress.append(
            Ingress(
                discovery_name=s.discovery_name,
                port=plan.ingress[s.discovery_name],
                app_port=s.container_port,
                intercept_port=intercept,
                app_protocol=s.app_protocol or "tcp",
                timeouts=Timeouts(
                    per_request_timeout_seconds=s.per_request_timeout_seconds,
                    idle_timeout_seconds=s.idle_timeout_seconds,
                ),
            )
        )
    access_log = None
    if scc is not None and scc.access_log_configuration is not None:
        alc = scc.access_log_configuration
        access_log = AccessLogConfig(
            format=alc.format, include_query_parameters=alc.include_query_parameters or "DISABLED"
        )
    return ProxyConfig(
        version=inputs.deployment_name,
        service=ServiceIdentity(namespace=inputs.k8s_namespace, name=inputs.service_name),
        admin=AdminConfig(address="0.0.0.0", port=plan.admin),
        egress=egress,
        endpoints=endpoints,
        aliases=aliases,
        ingress=ingress,
        access_log=access_log,
    )


def config_document(config: ProxyConfig) -> dict[str, Any]:
    """The config as the file holds it: camelCase keys, unset fields left out."""
    return config.model_dump(mode="json", by_alias=True, exclude_none=True)


def config_text(config: ProxyConfig) -> str:
    """Canonical JSON (sorted keys), so equal configs are equal files."""
    return json.dumps(config_document(config), indent=2, sort_keys=True) + "\n"


def config_hash(config: ProxyConfig) -> str:
    """16 hex digits of sha256 over the canonical file."""
    return hashlib.sha256(config_text(config).encode()).hexdigest()[:16]
