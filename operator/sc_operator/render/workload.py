"""The service's ``apps/v1`` Deployment: the task's containers plus the proxy, rolled by Kubernetes.

One Deployment per ConnectService (named after it); each ConnectDeployment changes its pod template (the
ConfigMap it mounts, the deployment label), so Kubernetes rolls the pods and every rollout's pods are found by
the ``serviceconnect.dev/deployment`` label.
"""

from __future__ import annotations

from typing import Any

from sc_operator import API_VERSION
from sc_operator.api.service import DeploymentConfiguration
from sc_operator.render.containers import (
    RUN_VOLUME,
    TMP_VOLUME,
    container_name,
    intercept_container,
    proxy_container,
    task_container,
)
from sc_operator.render.inputs import RenderInputs
from sc_operator.render.names import (
    CONFIG_HASH_ANNOTATION,
    CONFIG_KEY,
    CONFIG_VOLUME,
    DEPLOYMENT_ANNOTATION,
    DEPLOYMENT_LABEL,
    ESSENTIAL_ANNOTATION,
    PROMETHEUS_PATH_ANNOTATION,
    PROMETHEUS_PORT_ANNOTATION,
    PROMETHEUS_SCRAPE_ANNOTATION,
    PROXY_VERSION_ANNOTATION,
    label_value,
    managed_labels,
)
from sc_operator.render.ports import PortPlan
from sc_operator.render.resources import task_resources
from sc_operator.render.tls import volumes_and_mounts
from sc_operator.render.vips import vip_plan


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    """A controller owner reference to one of our resources (garbage collection removes the child)."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def rolling_update(config: DeploymentConfiguration | None) -> dict[str, Any]:
    """maximumPercent / minimumHealthyPercent → RollingUpdate maxSurge / maxUnavailable.

    maxSurge = maximumPercent - 100 %, maxUnavailable = 100 - minimumHealthyPercent % (percentages of the
    replica count, as in ECS). Kubernetes refuses both being 0; ECS with 100/100 can never replace a task,
    so we keep the healthy floor (maxUnavailable 0) and allow one extra pod.
    """
    config = config or DeploymentConfiguration()
    surge = config.maximum_percent - 100
    unavailable = 100 - config.minimum_healthy_percent
    max_surge: int | str = f"{surge}%" if surge > 0 or unavailable > 0 else 1
    return {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": f"{unavailable}%"},
    }


def needs_redirect(inputs: RenderInputs) -> bool:
    """Whether the pod needs the privileged interception init container: the ``redirect`` mode with
    something to redirect (an alias to reach, or a served containerPort without ingressPortOverride).
    A client with nothing pinned, or a server whose every endpoint has an override, runs unprivileged."""
    if inputs.interception != "redirect":
        return False
    return bool(inputs.pinned) or any(s.ingress_port_override is None for s in inputs.served())


def pod_labels(inputs: RenderInputs) -> dict[str, str]:
    return {**managed_labels(inputs.service_name), DEPLOYMENT_LABEL: label_value(inputs.deployment_name)}


def scrape_annotations(plan: PortPlan) -> dict[str, str]:
    """Where Prometheus scrapes the proxy: its pod-reachable metrics port (``plan.admin``), ``/metrics``."""
    return {
        PROMETHEUS_SCRAPE_ANNOTATION: "true",
        PROMETHEUS_PORT_ANNOTATION: str(plan.admin),
        PROMETHEUS_PATH_ANNOTATION: "/metrics",
    }


def pod_spec(inputs: RenderInputs, plan: PortPlan, proxy_resources: dict[str, Any]) -> dict[str, Any]:
    """The pod spec: hostAliases, interception, the proxy in its start position, the task's containers."""
    settings = inputs.settings
    sizes = task_resources(inputs, proxy_resources if inputs.service_connect is not None else None)
    bridge = inputs.task_definition.network_mode == "bridge"
    app = [
        task_container(c, resources, publish_host_ports=bridge)
        for c, resources in zip(inputs.containers(), sizes.containers, strict=True)
    ]
    spec: dict[str, Any] = {
        # Service links put one set of env vars per Service in every container; with hundreds of headless
        # Services in a namespace that is noise and start-up cost, and endpoints are reached by alias anyway.
        "enableServiceLinks": False,
    }
    hostname = next((c.hostname for c in inputs.containers() if c.hostname), None)
    if hostname:
        spec["hostname"] = hostname
    if sizes.pod is not None:
        spec["resources"] = sizes.pod
    if inputs.service_connect is None:
        spec["containers"] = app
        return spec

    aliases = vip_plan(inputs).host_aliases()
    if aliases:
        spec["hostAliases"] = aliases
    tls_volumes, tls_mounts = volumes_and_mounts(inputs)
    proxy = proxy_container(
        settings, plan, sizes.proxy, native_sidecar=inputs.native_sidecar, extra_mounts=tls_mounts
    )
    init: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = [
        {
            "name": CONFIG_VOLUME,
            "configMap": {"name": inputs.deployment_name, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]},
        },
        {"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        *tls_volumes,
    ]
    if needs_redirect(inputs):
        init.append(intercept_container(settings))
        volumes.append({"name": RUN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}})
    if inputs.native_sidecar:
        init.append(proxy)
        containers = app
    else:
        containers = [proxy, *app]
    if init:
        spec["initContainers"] = init
    spec["containers"] = containers
    spec["volumes"] = volumes
    return spec


def render_deployment(
    inputs: RenderInputs, plan: PortPlan, proxy_resources: dict[str, Any], config_hash: str
) -> dict[str, Any]:
    """The Deployment, owned by the ConnectService."""
    labels = managed_labels(inputs.service_name)
    essential = [container_name(c.name) for c in inputs.containers() if c.essential is not False]
    template_annotations = {
        DEPLOYMENT_ANNOTATION: inputs.deployment_name,
        ESSENTIAL_ANNOTATION: ",".join(essential),
    }
    if inputs.service_connect is not None:
        template_annotations[CONFIG_HASH_ANNOTATION] = config_hash
        template_annotations[PROXY_VERSION_ANNOTATION] = inputs.settings.effective_proxy_version
        if inputs.settings.prometheus_annotations:
            template_annotations.update(scrape_annotations(plan))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": inputs.service_name,
            "namespace": inputs.k8s_namespace,
            "labels": dict(labels),
            "annotations": {DEPLOYMENT_ANNOTATION: inputs.deployment_name},
            "ownerReferences": [owner_reference("ConnectService", inputs.service_name, inputs.service_uid)],
        },
        "spec": {
            "replicas": inputs.service.desired_count,
            "selector": {"matchLabels": dict(labels)},
            "strategy": rolling_update(inputs.service.deployment_configuration),
            "template": {
                "metadata": {"labels": pod_labels(inputs), "annotations": template_annotations},
                "spec": pod_spec(inputs, plan, proxy_resources),
            },
        },
    }
