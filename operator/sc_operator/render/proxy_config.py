"""The sidecar's configuration for one rollout (a :class:`sc_proxy.config.ProxyConfig`).

Endpoints are the pinned list: each distinct discoveryName becomes one upstream whose tasks the proxy finds
through the owner's headless Service (A records for addresses, SRV for the port to dial); each endpoint's
alias port becomes an alias on the endpoint's VIP, where its dnsName, discoveryName and portName resolve.
Each served endpoint becomes an ingress listener that forwards to the app on 127.0.0.1:containerPort.

The file is built as a plain document holding only what we decide (the sidecar applies its own defaults to
the rest), as compact canonical JSON: a rollout in a namespace of hundreds of endpoints pins them all into
one ConfigMap, which Kubernetes caps at 1 MiB, and renders happen on every reconcile. The document is
validated with the sidecar's own model (:func:`sc_proxy.config.parse_config`) once per distinct file.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

from sc_operator.api.common import Endpoint
from sc_operator.render.inputs import RenderError, RenderInputs
from sc_operator.render.names import headless_dns_name, headless_service_name, srv_name
from sc_operator.render.ports import PortPlan, ServedPort, plan_ports
from sc_operator.render.tls import endpoint_tls, ingress_tls
from sc_operator.render.vips import vip_plan
from sc_proxy.config import ConfigError, ProxyConfig, parse_config


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
        admin_local_preferred=settings.admin_local_port,
        egress_preferred=settings.egress_port,
        ingress_base=settings.ingress_port_base,
        also_avoid=alias_ports,
    )


def endpoint_discovery(
    ep: Endpoint, connect_namespace: str, cluster_domain: str, resolver: str
) -> dict[str, Any]:
    """Where a pinned endpoint's tasks are found: its owner's headless Service (a ``dns`` discovery)."""
    headless = headless_service_name(ep.discovery_name, connect_namespace)
    dns: dict[str, Any] = {
        "name": headless_dns_name(headless, ep.service.namespace, cluster_domain),
        "srvName": srv_name(headless, ep.service.namespace, cluster_domain, ep.app_protocol or "tcp"),
    }
    if resolver:
        dns["resolver"] = resolver
    return dns


def _timeouts(per_request: int | None, idle: int | None) -> dict[str, float]:
    # Floats, as the model holds them, so the file and the parsed model dump identically.
    out = {}
    if per_request is not None:
        out["perRequestTimeoutSeconds"] = float(per_request)
    if idle is not None:
        out["idleTimeoutSeconds"] = float(idle)
    return out


def proxy_config_document(inputs: RenderInputs, plan: PortPlan | None = None) -> dict[str, Any]:
    """The ProxyConfig of this rollout as the file's document (camelCase keys; pure, not yet validated)."""
    plan = plan or port_plan(inputs)
    settings = inputs.settings
    scc = inputs.service_connect
    pinned = sorted(inputs.pinned, key=lambda e: (e.discovery_name, e.dns_name, e.port))

    endpoints: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ep in pinned:
        if ep.discovery_name in seen:
            continue
        seen.add(ep.discovery_name)
        dns = endpoint_discovery(ep, inputs.connect_namespace, settings.cluster_domain, settings.dns_resolver)
        upstream: dict[str, Any] = {
            "name": ep.discovery_name,
            "appProtocol": ep.app_protocol or "tcp",
            "discovery": {"dns": dns},
        }
        # The owner's timeouts: ECS enforces perRequestTimeout at the caller's proxy too.
        timeouts = _timeouts(ep.per_request_timeout_seconds, ep.idle_timeout_seconds)
        if timeouts:
            upstream["timeouts"] = timeouts
        # As pinned: a client keeps plaintext to an endpoint pinned before its owner turned TLS on.
        tls = endpoint_tls(ep, inputs)
        if tls is not None:
            upstream["tls"] = tls
        if ep.via is not None:
            # A peer's task behind its gateway (network: gateway): dial the gateway, name the task.
            upstream["via"] = {"address": ep.via.address, "port": ep.via.port}
        endpoints.append(upstream)
    aliases = [
        {"address": address, "port": port, "endpoint": discovery}
        for (address, port), discovery in vip_plan(inputs).ports.items()
    ]
    ingress = []
    for s in inputs.served():
        entry: dict[str, Any] = {
            "discoveryName": s.discovery_name,
            "address": "0.0.0.0",
            "port": plan.ingress[s.discovery_name],
            "appAddress": "127.0.0.1",
            "appPort": s.container_port,
            "appProtocol": s.app_protocol or "tcp",
        }
        # Without iptables (listeners mode) nothing can be intercepted; with an override ECS sends no
        # interceptPort, so callers of the containerPort reach the app directly.
        if inputs.interception == "redirect" and s.ingress_port_override is None:
            entry["interceptPort"] = s.container_port
        timeouts = _timeouts(s.per_request_timeout_seconds, s.idle_timeout_seconds)
        if timeouts:
            entry["timeouts"] = timeouts
        if s.tls:
            entry["tls"] = ingress_tls(inputs, s)
        ingress.append(entry)

    doc: dict[str, Any] = {
        "version": inputs.deployment_name,
        "service": {
            "namespace": inputs.k8s_namespace,
            "name": inputs.service_name,
            "cluster": settings.cluster_name,
        },
        # Probes and scrapes reach the pod IP; /config and POST /drain stay on loopback.
        "admin": {
            "address": "0.0.0.0",
            "port": plan.admin,
            "localAddress": "127.0.0.1",
            "localPort": plan.admin_local,
        },
        "endpoints": endpoints,
        "aliases": aliases,
        "ingress": ingress,
    }
    if ingress and settings.proxy_linger_seconds:
        # Callers dial this task's address until their next re-resolution: keep it refusing till then.
        doc["lingerSeconds"] = float(settings.proxy_linger_seconds)
    if aliases:
        if inputs.interception == "redirect":
            doc["egress"] = {"mode": "redirect", "address": "127.0.0.1", "port": plan.egress}
        else:
            doc["egress"] = {"mode": "listeners"}
    if scc is not None and scc.access_log_configuration is not None:
        alc = scc.access_log_configuration
        doc["accessLog"] = {
            "format": alc.format,
            "includeQueryParameters": alc.include_query_parameters or "DISABLED",
        }
    return doc


def document_text(doc: dict[str, Any]) -> str:
    """Canonical JSON: sorted keys (equal documents are equal files), compact (C-encoded, small)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"


def text_hash(text: str) -> str:
    """16 hex digits of sha256 over a rendered file."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_document(doc: dict[str, Any]) -> ProxyConfig:
    """Validate a rendered document with the sidecar's model; a failure is a RenderError naming the field."""
    try:
        return parse_config(doc)
    except ConfigError as exc:
        raise RenderError(f"the rendered proxy configuration is invalid: {exc}") from None


class _KnownGood:
    """Hashes of files that already passed validation, so re-rendering a rollout (every reconcile, every
    restart) does not re-validate hundreds of endpoints. Bounded; a pure memo (same input, same answer)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def check(self, digest: str, doc: dict[str, Any]) -> None:
        if digest in self._seen:
            self._seen.move_to_end(digest)
            return
        parse_document(doc)
        self._seen[digest] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)


KNOWN_GOOD = _KnownGood(8192)


def render_proxy_config(inputs: RenderInputs, plan: PortPlan | None = None) -> ProxyConfig:
    """The ProxyConfig of this rollout (pure; validated)."""
    return parse_document(proxy_config_document(inputs, plan))


def config_text(config: ProxyConfig) -> str:
    """The file of ``config``: what was set (not the sidecar's defaults), canonical JSON. For a rendered
    config this is exactly the ConfigMap's ``proxy.json``."""
    return document_text(config.model_dump(mode="json", by_alias=True, exclude_unset=True))


def config_hash(config: ProxyConfig) -> str:
    """16 hex digits of sha256 over :func:`config_text` (the ``config-hash`` annotation)."""
    return text_hash(config_text(config))
