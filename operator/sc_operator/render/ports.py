"""The proxy's own ports: stats & health, loopback admin, egress and one ingress listener per served endpoint.

ECS picks random ephemeral ports that avoid every containerPort of the task (reference §2.1). We pick
deterministically instead (the same inputs always render the same pods, so a re-render never rolls the
Deployment): each port starts at its preferred value from the operator settings and moves up to the next
port nobody in the pod uses. ``ingressPortOverride`` wins for its endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class PortExhaustedError(Exception):
    """No free port is left above the preferred one (practically impossible, but named)."""


@dataclass(frozen=True)
class ServedPort:
    """One endpoint this task serves: its discoveryName, the app's containerPort, the optional override."""

    discovery_name: str
    container_port: int
    ingress_port_override: int | None = None


@dataclass(frozen=True)
class PortPlan:
    """The chosen ports. ``admin``: the pod-reachable stats & health listener (``/ready``, ``/live``,
    ``/metrics``; the container port ``sc-metrics``); ``admin_local``: the loopback admin listener
    (``/config``, ``POST /drain``; not declared as a container port). ``ingress`` maps discoveryName →
    listener port."""

    admin: int
    egress: int
    ingress: dict[str, int] = field(default_factory=dict)
    admin_local: int = 9902


def _next_free(preferred: int, taken: set[int]) -> int:
    port = preferred
    while port in taken:
        port += 1
        if port > 65535:
            raise PortExhaustedError(f"no free port at or above {preferred}")
    taken.add(port)
    return port


def plan_ports(
    task_ports: Iterable[int],
    served: Sequence[ServedPort],
    *,
    admin_preferred: int,
    egress_preferred: int,
    ingress_base: int,
    also_avoid: Iterable[int] = (),
    admin_local_preferred: int = 9902,
) -> PortPlan:
    """Choose the proxy's ports so none collides with a task port, an override, or ``also_avoid``.

    ``also_avoid`` is for the ``listeners`` interception mode, where the proxy also binds every client-alias
    port on a 127.255.x.y address and so cannot bind those ports on the wildcard address. The loopback admin
    port avoids the task's ports too: an app binding the wildcard address would collide with it.
    Served endpoints are numbered in ``served`` order (the order of the service's configuration).
    """
    taken = set(task_ports) | set(also_avoid)
    overrides = {s.ingress_port_override for s in served if s.ingress_port_override}
    taken |= overrides
    admin = _next_free(admin_preferred, taken)
    admin_local = _next_free(admin_local_preferred, taken)
    egress = _next_free(egress_preferred, taken)
    ingress: dict[str, int] = {}
    for s in served:
        if s.ingress_port_override:
            ingress[s.discovery_name] = s.ingress_port_override
        else:
            ingress[s.discovery_name] = _next_free(ingress_base, taken)
    return PortPlan(admin=admin, egress=egress, ingress=ingress, admin_local=admin_local)
