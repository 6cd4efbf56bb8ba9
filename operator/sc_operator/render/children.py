"""``render_children``: everything one rollout of a ConnectService materialises as, in one pure call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sc_operator.render.checks import render_violations
from sc_operator.render.inputs import RenderError, RenderInputs
from sc_operator.render.names import (
    CONFIG_HASH_ANNOTATION,
    CONFIG_KEY,
    DEPLOYMENT_LABEL,
    PROXY_VERSION_ANNOTATION,
    label_value,
    managed_labels,
)
from sc_operator.render.proxy_config import (
    KNOWN_GOOD,
    document_text,
    port_plan,
    proxy_config_document,
    text_hash,
)
from sc_operator.render.resources import proxy_resources
from sc_operator.render.services import render_headless_services
from sc_operator.render.workload import owner_reference, render_deployment
from sc_proxy.config import ProxyConfig, parse_config


@dataclass(frozen=True)
class Children:
    """Plain Kubernetes objects, owner references set.

    ``config_map`` (owned by the ConnectDeployment, immutable) is None when Service Connect is disabled:
    then no proxy is injected and nothing needs configuring. ``deployment`` and ``services`` are owned by
    the ConnectService. ``proxy_config`` is the ConfigMap's file parsed with the sidecar's model.
    """

    config_map: dict[str, Any] | None
    deployment: dict[str, Any]
    services: list[dict[str, Any]] = field(default_factory=list)
    config_hash: str = ""

    @cached_property
    def proxy_config(self) -> ProxyConfig | None:
        if self.config_map is None:
            return None
        return parse_config(json.loads(self.config_map["data"][CONFIG_KEY]))


def render_config_map(inputs: RenderInputs, text: str) -> dict[str, Any]:
    """The ConfigMap holding the proxy's file ``text``: named after the ConnectDeployment, owned by it,
    immutable (a rollout's pinned endpoint list must never change under its running pods)."""
    digest = text_hash(text)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": inputs.deployment_name,
            "namespace": inputs.k8s_namespace,
            "labels": {
                **managed_labels(inputs.service_name),
                DEPLOYMENT_LABEL: label_value(inputs.deployment_name),
            },
            "annotations": {
                CONFIG_HASH_ANNOTATION: digest,
                PROXY_VERSION_ANNOTATION: inputs.settings.effective_proxy_version,
            },
            "ownerReferences": [
                owner_reference("ConnectDeployment", inputs.deployment_name, inputs.deployment_uid)
            ],
        },
        "immutable": True,
        "data": {CONFIG_KEY: text},
    }


def service_proxy_resources(inputs: RenderInputs) -> dict[str, Any]:
    """The proxy's resources for this service (sizing rule, the service's override, the operator's)."""
    override = inputs.service.proxy_resources
    return proxy_resources(
        inputs.settings.proxy_sizing,
        expected_requests_per_second=inputs.service.expected_requests_per_second,
        namespace_services=inputs.namespace_services,
        namespace_tasks=inputs.namespace_tasks,
        override_cpu_units=override.cpu if override else None,
        override_memory_mib=override.memory if override else None,
        settings_override=inputs.settings.proxy_resources,
    )


def render_children(inputs: RenderInputs) -> Children:
    """Render the ConfigMap, Deployment and headless Services of one rollout.

    Raises :class:`RenderError` listing every violation of :func:`render_violations` (check those first to
    report them as conditions).
    """
    violations = render_violations(inputs)
    if violations:
        raise RenderError("; ".join(str(v) for v in violations))
    plan = port_plan(inputs)
    resources = service_proxy_resources(inputs)
    if inputs.service_connect is None:
        deployment = render_deployment(inputs, plan, resources, "")
        return Children(config_map=None, deployment=deployment)
    doc = proxy_config_document(inputs, plan)
    text = document_text(doc)
    digest = text_hash(text)
    KNOWN_GOOD.check(digest, doc)
    return Children(
        config_map=render_config_map(inputs, text),
        deployment=render_deployment(inputs, plan, resources, digest),
        services=render_headless_services(inputs, plan),
        config_hash=digest,
    )
