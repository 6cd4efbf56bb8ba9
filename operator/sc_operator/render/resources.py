"""ECS sizes as Kubernetes quantities, the proxy's resources, and the task size applied to the pod.

ECS counts CPU in units (1024 units = 1 vCPU) and memory in MiB. Kubernetes counts CPU in millicores
(1000m = 1 vCPU), so units * 1000 / 1024, rounded up so a container never gets less than it asked for
(1 unit → 1m; 100 → 98m; 256 → 250m; 1024 → 1000m).

The task size (task-level ``cpu``/``memory``) bounds the whole task in ECS, the proxy included: the proxy
and the containers without their own limits share what no container reserves. :func:`task_resources`
applies it in one of two ways (docs/operator.md, "Task size"):

- pod-level resources (``spec.resources``, Kubernetes ≥ 1.34 with the PodLevelResources feature, on by
  default there): the pod's requests and limits are the task size, exactly as in ECS; containers keep their
  own values, and the sized proxy requests only what the containers leave (no limit of its own);
- otherwise a split: every container without ``memory`` gets an equal share of the task memory left after
  the containers' limits and the proxy's limit as its memory limit, and every container without ``cpu``
  an equal share of the unreserved task CPU as its request.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from sc_operator.api.taskdef import ContainerDefinition
from sc_operator.api.units import parse_cpu, parse_memory
from sc_operator.render.inputs import RenderInputs
from sc_operator.settings import ProxySizing

#: The first Kubernetes version with pod-level resources (the PodLevelResources feature, beta) on by default.
POD_LEVEL_RESOURCES_VERSION = (1, 34)
#: The smallest memory limit a split gives a container (ECS and Docker refuse less than 6 MiB).
MIN_CONTAINER_MIB = 6
_MIB = Decimal(1024 * 1024)


def cpu_millicores(units: int) -> int:
    """ECS CPU units → millicores, rounded up (0 stays 0)."""
    if units < 0:
        raise ValueError(f"cpu: {units} CPU units is negative")
    return -(-units * 1000 // 1024)


def cpu_quantity(units: int) -> str:
    """ECS CPU units → a Kubernetes CPU quantity such as ``"250m"``."""
    return f"{cpu_millicores(units)}m"


def memory_quantity(mib: int) -> str:
    """MiB → a Kubernetes memory quantity such as ``"64Mi"``."""
    if mib < 0:
        raise ValueError(f"memory: {mib} MiB is negative")
    return f"{mib}Mi"


@dataclass(frozen=True)
class ProxySize:
    """The proxy's size in ECS terms, with the reason (shown in docs and events)."""

    cpu_units: int
    memory_mib: int
    reason: str


def proxy_size(
    sizing: ProxySizing,
    *,
    expected_requests_per_second: int | None,
    namespace_services: int,
    namespace_tasks: int,
    override_cpu_units: int | None = None,
    override_memory_mib: int | None = None,
) -> ProxySize:
    """The seeds' rule (reference §10): 256 units / 64 MiB; 512 units above 500 requests/s; +128 MiB when
    the namespace holds more than 100 services or 2000 tasks. A service's own override wins per field."""
    reasons = []
    cpu = sizing.cpu_units
    if (expected_requests_per_second or 0) > sizing.high_traffic_requests_per_second:
        cpu = sizing.high_traffic_cpu_units
        reasons.append(f"more than {sizing.high_traffic_requests_per_second} requests/s")
    memory = sizing.memory_mib
    if namespace_services > sizing.large_namespace_services or namespace_tasks > sizing.large_namespace_tasks:
        memory += sizing.large_namespace_extra_memory_mib
        reasons.append(
            f"namespace holds more than {sizing.large_namespace_services} services "
            f"or {sizing.large_namespace_tasks} tasks"
        )
    if override_cpu_units is not None:
        cpu = override_cpu_units
        reasons.append("cpu set by proxyResources")
    if override_memory_mib is not None:
        memory = override_memory_mib
        reasons.append("memory set by proxyResources")
    return ProxySize(cpu, memory, "; ".join(reasons) or "default")


def proxy_resources(
    sizing: ProxySizing,
    *,
    expected_requests_per_second: int | None,
    namespace_services: int,
    namespace_tasks: int,
    override_cpu_units: int | None = None,
    override_memory_mib: int | None = None,
    settings_override: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The proxy container's ``resources``.

    Requests are the sized values; the memory limit is ``memoryLimitFactor`` times the request (the seeds'
    figure is a reservation; ECS lets the proxy use whatever memory the task does not reserve). No CPU
    limit: throttling a proxy adds latency to every request. ``settings_override`` (the operator setting)
    replaces the sizing rules unless the service sets its own proxyResources.
    """
    service_override = override_cpu_units is not None or override_memory_mib is not None
    if settings_override is not None and not service_override:
        return {k: dict(v) for k, v in sorted(settings_override.items())}
    size = proxy_size(
        sizing,
        expected_requests_per_second=expected_requests_per_second,
        namespace_services=namespace_services,
        namespace_tasks=namespace_tasks,
        override_cpu_units=override_cpu_units,
        override_memory_mib=override_memory_mib,
    )
    limit_mib = int(size.memory_mib * sizing.memory_limit_factor)
    return {
        "requests": {"cpu": cpu_quantity(size.cpu_units), "memory": memory_quantity(size.memory_mib)},
        "limits": {"memory": memory_quantity(limit_mib)},
    }


def container_resources(c: ContainerDefinition) -> dict[str, Any]:
    """A task container's own ``resources``: cpu → requests.cpu, memoryReservation → requests.memory,
    memory → limits.memory (empty when it sets none)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if c.cpu:
        requests["cpu"] = cpu_quantity(c.cpu)
    if c.memory_reservation:
        requests["memory"] = memory_quantity(c.memory_reservation)
    if c.memory:
        limits["memory"] = memory_quantity(c.memory)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


@dataclass(frozen=True)
class TaskResources:
    """The task size as rendered: the pod's ``spec.resources`` (or None), each task container's
    ``resources`` (in task order) and the proxy's."""

    pod: dict[str, Any] | None
    containers: list[dict[str, Any]]
    proxy: dict[str, Any]


def pod_level_resources(inputs: RenderInputs) -> bool:
    """Whether to render ``spec.resources``: the ``pod_level_resources`` setting, or with ``auto`` the
    API server's version (a server with the feature gate off would drop the field, so a cluster that turns
    it off on ≥ 1.34 sets ``disabled``)."""
    setting = inputs.settings.pod_level_resources
    if setting == "auto":
        return inputs.server_version >= POD_LEVEL_RESOURCES_VERSION
    return setting == "enabled"


def _quantity(resources: dict[str, Any], kind: str, name: str) -> Decimal:
    value = (resources.get(kind) or {}).get(name)
    return Decimal(parse_quantity(value)) if value is not None else Decimal(0)  # type: ignore[no-untyped-call]


def _millicores(resources: dict[str, Any], kind: str) -> int:
    return int(_quantity(resources, kind, "cpu") * 1000)


def _mib(resources: dict[str, Any], kind: str) -> int:
    return -int(-_quantity(resources, kind, "memory") // _MIB)  # rounded up


def task_resources(inputs: RenderInputs, proxy: dict[str, Any] | None) -> TaskResources:
    """Apply the task size (module docstring). ``proxy`` is the proxy's ``resources`` (None: no proxy)."""
    task = inputs.task_definition
    containers = inputs.containers()
    own = [container_resources(c) for c in containers]
    task_cpu_m = cpu_millicores(parse_cpu(task.cpu)) if task.cpu is not None else None
    task_mib = parse_memory(task.memory) if task.memory is not None else None
    proxy_out = dict(proxy or {})
    if task_cpu_m is None and task_mib is None:
        return TaskResources(None, own, proxy_out)
    if pod_level_resources(inputs):
        pod: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
        if task_cpu_m is not None:
            pod["requests"]["cpu"] = pod["limits"]["cpu"] = f"{task_cpu_m}m"
        if task_mib is not None:
            pod["requests"]["memory"] = pod["limits"]["memory"] = memory_quantity(task_mib)
        if proxy is not None and not _proxy_explicit(inputs):
            proxy_out = _proxy_within(proxy, own, task_cpu_m, task_mib)
        return TaskResources(pod, own, proxy_out)
    return TaskResources(None, _split(containers, own, proxy, task_cpu_m, task_mib), proxy_out)


def _proxy_explicit(inputs: RenderInputs) -> bool:
    return inputs.service.proxy_resources is not None or inputs.settings.proxy_resources is not None


def _proxy_within(
    proxy: dict[str, Any], own: list[dict[str, Any]], task_cpu_m: int | None, task_mib: int | None
) -> dict[str, Any]:
    """The sized proxy inside pod-level resources: it requests what the containers leave of the task, up
    to its sized request, and has no limit of its own (the pod's limit bounds it, as the task's does in
    ECS). A container's memory request is its reservation, else its limit (Kubernetes' default)."""
    requests: dict[str, str] = {}
    if task_cpu_m is None:
        requests["cpu"] = proxy["requests"]["cpu"]
    else:
        left = task_cpu_m - sum(_millicores(r, "requests") for r in own)
        cpu = min(_millicores(proxy, "requests"), left)
        if cpu > 0:
            requests["cpu"] = f"{cpu}m"
    if task_mib is not None:
        reserved = sum(_mib(r, "requests") or _mib(r, "limits") for r in own)
        memory = min(_mib(proxy, "requests"), task_mib - reserved)
        if memory > 0:
            requests["memory"] = memory_quantity(memory)
    return {"requests": requests} if requests else {}


def _split(
    containers: list[ContainerDefinition],
    own: list[dict[str, Any]],
    proxy: dict[str, Any] | None,
    task_cpu_m: int | None,
    task_mib: int | None,
) -> list[dict[str, Any]]:
    """Without pod-level resources: share the task among the containers that set no size of their own."""
    out = [{k: dict(v) for k, v in r.items()} for r in own]
    proxy = proxy or {}
    no_memory = [i for i, c in enumerate(containers) if c.memory is None]
    if task_mib is not None and no_memory:
        left = task_mib - sum(c.memory or 0 for c in containers)
        # The proxy's limit comes out of the task memory first; when that would starve the containers,
        # only its reservation does (its limit is then above its share, as a burst allowance).
        available = left - _mib(proxy, "limits")
        if available < MIN_CONTAINER_MIB * len(no_memory):
            available = left - _mib(proxy, "requests")
        share = max(available // len(no_memory), MIN_CONTAINER_MIB)
        for i in no_memory:
            out[i].setdefault("limits", {})["memory"] = memory_quantity(share)
    no_cpu = [i for i, c in enumerate(containers) if not c.cpu]
    if task_cpu_m is not None and no_cpu:
        reserved_m = sum(cpu_millicores(c.cpu or 0) for c in containers) + _millicores(proxy, "requests")
        left_m = task_cpu_m - reserved_m
        share_m = left_m // len(no_cpu)
        if share_m > 0:
            for i in no_cpu:
                out[i].setdefault("requests", {})["cpu"] = f"{share_m}m"
    return out
