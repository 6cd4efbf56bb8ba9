"""ECS sizes as Kubernetes quantities, and the proxy's resources.

ECS counts CPU in units (1024 units = 1 vCPU) and memory in MiB. Kubernetes counts CPU in millicores
(1000m = 1 vCPU), so units * 1000 / 1024, rounded up so a container never gets less than it asked for
(1 unit → 1m; 100 → 98m; 256 → 250m; 1024 → 1000m).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sc_operator.settings import ProxySizing


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
