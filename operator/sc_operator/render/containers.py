"""Containers of the pod: the task's own containers, the injected proxy and the interception init container.

How ECS container fields become Kubernetes ones:

- ``entryPoint`` → ``command`` and ``command`` → ``args`` (Docker's ENTRYPOINT/CMD, as Kubernetes names them);
- ``cpu`` (units, a reservation) → ``requests.cpu`` in millicores; ``memory`` (hard limit, MiB) →
  ``limits.memory``; ``memoryReservation`` → ``requests.memory``;
- ``healthCheck`` (``CMD`` / ``CMD-SHELL``) → exec readiness and liveness probes with interval → period,
  timeout, retries → failureThreshold; ``startPeriod`` → a startup probe that allows that long before
  failures count (ECS ignores failures during startPeriod);
- ``essential: false`` → no probes: in ECS a non-essential container's health never makes the task
  unhealthy, so its health check does not gate the pod's readiness (a crashing non-essential container is
  still restarted by the kubelet, which ECS would not do).
"""

from __future__ import annotations

import re
from typing import Any

from sc_operator.api.taskdef import ContainerDefinition, HealthCheck
from sc_operator.render.names import (
    CONFIG_MOUNT,
    CONFIG_PATH,
    CONFIG_VOLUME,
    INTERCEPT_CONTAINER,
    PROXY_CONTAINER,
    container_port_name,
    is_port_name,
    short_hash,
)
from sc_operator.render.ports import PortPlan
from sc_operator.render.resources import container_resources
from sc_operator.settings import OperatorSettings

#: ECS health check defaults (RegisterTaskDefinition HealthCheck).
HC_INTERVAL, HC_TIMEOUT, HC_RETRIES = 30, 5, 3
RUN_VOLUME = "sc-intercept-run"
#: The proxy's container port for /ready, /live and /metrics (probes and Prometheus scrapes point at it).
METRICS_PORT_NAME = "sc-metrics"
#: The proxy's only writable directory (its root filesystem is read-only).
TMP_VOLUME = "sc-proxy-tmp"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESERVED_NAMES = {PROXY_CONTAINER, INTERCEPT_CONTAINER}


def container_name(ecs_name: str) -> str:
    """An ECS container name (``[a-zA-Z0-9_-]{1,255}``) as a Kubernetes one (a DNS label).

    Kept as is when already valid; otherwise lower-cased, ``_`` → ``-``, and an 8-hex hash of the original
    appended so ``Web`` and ``web_`` stay distinct. The proxy's names are never produced for a task container.
    """
    if len(ecs_name) <= 63 and _DNS1123_LABEL.match(ecs_name) and ecs_name not in _RESERVED_NAMES:
        return ecs_name
    cleaned = re.sub(r"[^a-z0-9-]+", "-", ecs_name.lower()).strip("-")
    suffix = short_hash(ecs_name)
    return f"{cleaned[: 63 - len(suffix) - 1].rstrip('-')}-{suffix}" if cleaned else f"c-{suffix}"


def _exec_command(hc: HealthCheck) -> list[str]:
    kind, *rest = hc.command
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    if kind == "CMD":
        return list(rest)
    # ECS also accepts a bare command (treated as CMD); NONE disables the check (handled by the caller).
    return list(hc.command)


def health_probes(hc: HealthCheck) -> dict[str, dict[str, Any]]:
    """readinessProbe, livenessProbe and (with startPeriod) startupProbe from an ECS health check."""
    if hc.command[0] == "NONE":
        return {}
    interval = hc.interval or HC_INTERVAL
    timeout = hc.timeout or HC_TIMEOUT
    retries = hc.retries or HC_RETRIES
    probe: dict[str, Any] = {
        "exec": {"command": _exec_command(hc)},
        "periodSeconds": interval,
        "timeoutSeconds": timeout,
        "failureThreshold": retries,
        "successThreshold": 1,
    }
    probes = {"readinessProbe": dict(probe), "livenessProbe": dict(probe)}
    if hc.start_period:
        # Succeeds at the first passing check; fails only once startPeriod is over and retries more fail.
        probes["startupProbe"] = {**probe, "failureThreshold": -(-hc.start_period // interval) + retries}
    return probes


def task_container(
    c: ContainerDefinition, resources: dict[str, Any] | None = None, *, publish_host_ports: bool = False
) -> dict[str, Any]:
    """One task container as a Kubernetes container.

    ``resources`` is its share of the task size (:func:`task_resources`), else its own values.
    ``publish_host_ports`` (bridge mode): a non-zero ``hostPort`` is published on the node's address, as
    Docker's bridge does; 0 or unset (ECS's dynamic host port) publishes nothing, the pod's own address
    serving instead.
    """
    out: dict[str, Any] = {"name": container_name(c.name), "image": c.image}
    if c.entry_point:
        out["command"] = list(c.entry_point)
    if c.command:
        out["args"] = list(c.command)
    if c.working_directory:
        out["workingDir"] = c.working_directory
    if c.environment:
        out["env"] = [{"name": kv.name, "value": kv.value or ""} for kv in c.environment]
    ports = []
    seen_names: set[str] = set()
    for pm in c.port_mappings or []:
        if pm.container_port is None:
            continue
        port: dict[str, Any] = {
            "containerPort": pm.container_port,
            "protocol": (pm.protocol or "tcp").upper(),
        }
        if publish_host_ports and pm.host_port:
            port["hostPort"] = pm.host_port
        # ECS port names allow '_' and 64 characters; Kubernetes port names are stricter, so keep the name
        # only when it is valid (it is informational: Services select the proxy's ports, not these).
        if pm.name and is_port_name(pm.name) and pm.name not in seen_names:
            port["name"] = pm.name
            seen_names.add(pm.name)
        ports.append(port)
    if ports:
        out["ports"] = ports
    resources = container_resources(c) if resources is None else resources
    if resources:
        out["resources"] = resources
    if c.health_check is not None and c.essential is not False:
        out.update(health_probes(c.health_check))
    return out


def proxy_security_context(uid: int) -> dict[str, Any]:
    # Everything the "restricted" Pod Security Standard asks of a container, so that in the listeners mode
    # (no init container) the proxy never stands between a namespace and that standard.
    return {
        "runAsUser": uid,
        "runAsGroup": uid,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _config_mount() -> dict[str, Any]:
    return {"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT, "readOnly": True}


def proxy_container(
    settings: OperatorSettings,
    plan: PortPlan,
    resources: dict[str, Any],
    *,
    native_sidecar: bool,
    extra_mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The injected proxy (``extra_mounts``: TLS files, read-only, for this container only).

    ``native_sidecar`` (API server ≥ 1.29): an init container with ``restartPolicy: Always`` and a startup
    probe on ``/ready``; the kubelet starts the app containers only once it passes. Otherwise the proxy is
    the first container and its postStart hook waits for ``/ready``: the kubelet runs a postStart hook to
    completion before starting the next container, so the app cannot send before the proxy is ready.
    """
    # The stats & health listener (/ready, /live, /metrics) is the only admin port the pod declares: the
    # loopback admin listener (/config, POST /drain) is for the pod itself.
    ports: list[dict[str, Any]] = [
        {"name": METRICS_PORT_NAME, "containerPort": plan.admin, "protocol": "TCP"}
    ]
    for discovery_name, port in sorted(plan.ingress.items(), key=lambda kv: kv[1]):
        ports.append({"name": container_port_name(discovery_name), "containerPort": port, "protocol": "TCP"})
    out: dict[str, Any] = {
        "name": PROXY_CONTAINER,
        "image": settings.proxy_image,
        "imagePullPolicy": settings.proxy_image_pull_policy,
        "command": ["sc-proxy"],
        "args": ["--config", CONFIG_PATH],
        "ports": ports,
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": plan.admin},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/live", "port": plan.admin},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "resources": resources,
        "securityContext": proxy_security_context(settings.proxy_uid),
        "volumeMounts": [_config_mount(), {"name": TMP_VOLUME, "mountPath": "/tmp"}, *(extra_mounts or [])],
    }
    if native_sidecar:
        out["restartPolicy"] = "Always"
        out["startupProbe"] = {
            "httpGet": {"path": "/ready", "port": plan.admin},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": settings.wait_ready_timeout,
        }
    else:
        out["lifecycle"] = {
            "postStart": {
                "exec": {
                    "command": [
                        "sc-proxy",
                        "wait-ready",
                        "--admin-port",
                        str(plan.admin),
                        "--timeout",
                        str(settings.wait_ready_timeout),
                    ]
                }
            }
        }
    return out


def intercept_container(settings: OperatorSettings) -> dict[str, Any]:
    """The init container that installs the iptables rules (``redirect`` mode only).

    The only container that is not non-root: iptables needs root with NET_ADMIN (and NET_RAW for its raw
    socket probes); every other capability is dropped. ``/run`` is writable for iptables' lock file.
    """
    return {
        "name": INTERCEPT_CONTAINER,
        "image": settings.proxy_image,
        "imagePullPolicy": settings.proxy_image_pull_policy,
        "command": ["sc-proxy"],
        "args": ["--config", CONFIG_PATH, "install-redirect"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
        "volumeMounts": [_config_mount(), {"name": RUN_VOLUME, "mountPath": "/run"}],
    }
