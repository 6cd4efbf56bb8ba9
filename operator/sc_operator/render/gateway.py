"""The gateway's proxy configuration (the ``gateway`` network shape between clusters): pure.

A cluster's gateway admits connections from peer clusters only to the Ready tasks of the endpoints
registered *here* in ConnectNamespaces that have peers, on the port their clients dial. It finds them
the way a client proxy does, through the owners' headless Services (A records: Ready pods only; SRV:
the port), so a task that turns NotReady leaves the allow list with the DNS record, and the gateway
never needs the API server.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sc_operator.api.common import Endpoint
from sc_operator.kube import Obj
from sc_operator.render.containers import proxy_security_context
from sc_operator.render.names import (
    CONFIG_KEY,
    CONFIG_MOUNT,
    CONFIG_PATH,
    CONFIG_VOLUME,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
)
from sc_operator.render.proxy_config import endpoint_discovery
from sc_operator.settings import OperatorSettings

#: The gateway's ConfigMap, Deployment and Service, in the operator's namespace.
GATEWAY_NAME = "sc-gateway"
#: On the gateway's pod template: the configuration version it runs (a change rolls the gateways).
CONFIG_VERSION_ANNOTATION = "serviceconnect.dev/gateway-config"


def gateway_allow(
    linked: Iterable[tuple[str, Sequence[Endpoint]]], settings: OperatorSettings
) -> list[dict[str, Any]]:
    """One ``dns`` discovery per local endpoint of each linked ConnectNamespace (``(name, endpoints)``),
    deduplicated and sorted so the rendering is stable. Mirrored endpoints are never exposed: a gateway
    forwards into its own cluster only."""
    seen: dict[str, dict[str, Any]] = {}
    for cns, endpoints in linked:
        for ep in endpoints:
            if not ep.local:
                continue
            dns = endpoint_discovery(ep, cns, settings.cluster_domain, settings.dns_resolver)
            seen.setdefault(dns["srvName"], {"dns": dns})
    return [seen[k] for k in sorted(seen)]


def gateway_config_document(
    linked: Iterable[tuple[str, Sequence[Endpoint]]], settings: OperatorSettings
) -> dict[str, Any]:
    """The gateway's ``sc-proxy`` configuration (an empty allow list routes nowhere). Its ``version`` is
    the hash of the rest, so the Deployment rolls exactly when what it admits changes."""
    allow = gateway_allow(linked, settings)
    body: dict[str, Any] = {
        "service": {"name": GATEWAY_NAME, "cluster": settings.cluster_name},
        "admin": {"port": settings.admin_port, "localPort": settings.admin_local_port},
        "gateway": {"address": "0.0.0.0", "port": settings.gateway_port, "allow": allow},
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return {"version": f"gateway-{digest}", **body}


def gateway_objects(doc: dict[str, Any], namespace: str, settings: OperatorSettings) -> list[Obj]:
    """The ConfigMap, Deployment and Service of this cluster's gateway (in the operator's namespace).

    The proxy reads its configuration once, so the pod template carries the config's version: a change of
    what the gateway admits (a service registered or removed in a linked namespace, not a task coming or
    going: tasks come from DNS) rolls the gateways one by one (``maxUnavailable: 0``), each draining."""
    labels = {"app.kubernetes.io/name": GATEWAY_NAME, MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    meta = {"name": GATEWAY_NAME, "namespace": namespace, "labels": labels}
    config_map: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {CONFIG_KEY: json.dumps(doc, indent=2, sort_keys=True)},
    }
    container = {
        "name": GATEWAY_NAME,
        "image": settings.proxy_image,
        "imagePullPolicy": settings.proxy_image_pull_policy,
        "command": ["sc-proxy"],
        "args": ["--config", CONFIG_PATH],
        "ports": [
            {"name": "gateway", "containerPort": settings.gateway_port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": settings.admin_port, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": settings.admin_port}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/live", "port": settings.admin_port}, "periodSeconds": 10},
        "securityContext": proxy_security_context(settings.proxy_uid),
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT, "readOnly": True}],
    }
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": settings.gateway_replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY_NAME}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {CONFIG_VERSION_ANNOTATION: doc["version"]}},
                "spec": {
                    "automountServiceAccountToken": False,  # it never talks to the API server
                    "containers": [container],
                    "volumes": [{"name": CONFIG_VOLUME, "configMap": {"name": GATEWAY_NAME}}],
                },
            },
        },
    }
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": settings.gateway_service_type,
            "selector": {"app.kubernetes.io/name": GATEWAY_NAME},
            "ports": [
                {
                    "name": "gateway",
                    "port": settings.gateway_port,
                    "targetPort": "gateway",
                    "protocol": "TCP",
                }
            ],
        },
    }
    return [config_map, deployment, service]
