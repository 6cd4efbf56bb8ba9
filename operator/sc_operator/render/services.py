"""One headless Service per served endpoint: how client proxies find this service's tasks.

``clusterIP: None`` so DNS returns the ready pods' addresses (A/AAAA), ``publishNotReadyAddresses: false``
so a pod joins only once its proxy (and app) are ready, and one named port ``sc-<proto>`` whose SRV record
gives client proxies the port to dial on each task. That port is, as the seed's "Networking" says ("the
client service's proxy connects to the client-server service's proxy using the containerPort"):

- ``redirect`` interception, no ``ingressPortOverride``: the **containerPort**. The server pod's PREROUTING
  rule hands non-local connections to the containerPort to the endpoint's ingress listener, so proxy-to-proxy
  traffic goes through the server's proxy on the port a NetworkPolicy written from the task definition
  allows. ``targetPort`` is the app container's port name when it is a valid Kubernetes port name (each pod
  then publishes its own containerPort, even mid-rollout when it moved), else the number.
- ``ingressPortOverride`` set (either mode): the override, where the ingress listener listens and nothing
  is intercepted (ECS sends no interceptPort then).
- ``listeners`` interception (no privilege, no iptables), no override: the ingress listener's own port
  (15100 and up), since nothing can hand the containerPort to the proxy.

In the last two cases ``targetPort`` is the proxy container's named ingress port, so each pod publishes its
own listener port and a rollout that moves it needs no change visible to clients.
"""

from __future__ import annotations

from typing import Any

from sc_operator.render.inputs import RenderInputs, ServedEndpoint
from sc_operator.render.names import (
    DISCOVERY_ANNOTATION,
    DISCOVERY_LABEL,
    container_port_name,
    headless_service_name,
    ingress_port_name,
    is_port_name,
    label_value,
    managed_labels,
)
from sc_operator.render.ports import PortPlan
from sc_operator.render.workload import owner_reference


def dial_port(inputs: RenderInputs, served: ServedEndpoint, plan: PortPlan) -> tuple[int, int | str]:
    """(port, targetPort) on which client proxies reach ``served`` on this service's tasks (see above)."""
    if inputs.interception == "redirect" and served.ingress_port_override is None:
        target = served.port_name if is_port_name(served.port_name) else served.container_port
        return served.container_port, target
    return plan.ingress[served.discovery_name], container_port_name(served.discovery_name)


def render_headless_services(inputs: RenderInputs, plan: PortPlan) -> list[dict[str, Any]]:
    """The headless Services, owned by the ConnectService, in configuration order."""
    out = []
    for s in inputs.served():
        selector = managed_labels(inputs.service_name)
        port, target = dial_port(inputs, s, plan)
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": headless_service_name(s.discovery_name, inputs.connect_namespace),
                    "namespace": inputs.k8s_namespace,
                    "labels": selector | {DISCOVERY_LABEL: label_value(s.discovery_name)},
                    "annotations": {DISCOVERY_ANNOTATION: s.discovery_name},
                    "ownerReferences": [
                        owner_reference("ConnectService", inputs.service_name, inputs.service_uid)
                    ],
                },
                "spec": {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": False,
                    "selector": selector,
                    "ports": [
                        {
                            "name": ingress_port_name(s.app_protocol or "tcp"),
                            "protocol": "TCP",
                            "port": port,
                            "targetPort": target,
                        }
                    ],
                },
            }
        )
    return out
