"""``render_children``: everything one rollout of a ConnectService materialises as, in one pure call."""

from __future__ import annotations

from dataclasses import dataclass, field
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
from sc_operator.render.proxy_config import config_hash, config_text, port_plan, render_proxy_config
from sc_operator.render.resources import proxy_resources
from sc_operator.render.services import render_headless_services
from sc_operator.render.workload import owner_reference, render_deployment
from sc_proxy.config import ProxyConfig


@dataclass(frozen=True)
class Children:
    """Plain Kubernetes objects, owner references set.

    ``config_map`` (owned by the ConnectDeployment, immutable) is None when Service Connect is disabled:
    then no proxy is injected and nothing needs configuring. ``deployment`` and ``services`` are owned by
    the ConnectService. ``proxy_config`` is the parsed form of the ConfigMap's file.
    """

    config_map: dict[str, Any] | None
    deployment: dict[str, Any]
    services: list[dict[str, Any]] = field(default_factory=list)
    proxy_config: ProxyConfig | None = None
    config_hash: str = ""


def render_config_map(inputs: RenderInputs, config: ProxyConfig) -> dict[str, Any]:
    """The ConfigMap holding the proxy's file: named after the ConnectDeployment, owned by it, immutable
    (a rollout's pinned endpoint list must never change under its running pods)."""
    digest = config_hash(config)
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
        "data": {CONFIG_KEY: config_text(config)},
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
    config = render_proxy_config(inputs, plan)
    digest = config_hash(config)
    return Children(
        config_map=render_config_map(inputs, config),
        deployment=render_deployment(inputs, plan, resources, digest),
        services=render_headless_services(inputs, plan),
        proxy_config=config,
        config_hash=digest,
    )
