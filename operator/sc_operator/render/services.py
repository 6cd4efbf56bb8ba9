"""One headless Service per served endpoint: how client proxies find this service's tasks.

``clusterIP: None`` so DNS returns the ready pods' addresses (A/AAAA), ``publishNotReadyAddresses: false``
so a pod joins only once its proxy (and app) are ready, and one named port ``sc-<proto>`` whose
``targetPort`` is the proxy container's named ingress port: each pod's endpoint carries that pod's own
ingress port, so the SRV record always gives the right port, even mid-rollout when it moved.
"""

from __future__ import annotations

from typing import Any

from sc_operator.render.inputs import RenderInputs
from sc_operator.render.names import (
    DISCOVERY_ANNOTATION,
    DISCOVERY_LABEL,
    container_port_name,
    headless_service_name,
    ingress_port_name,
    label_value,
    managed_labels,
)
from sc_operator.render.ports import PortPlan
from sc_operator.render.workload import owner_reference


def render_headless_services(inputs: RenderInputs, plan: PortPlan) -> list[dict[str, Any]]:
    """The headless Services, owned by the ConnectService, in configuration order."""
    out = []
    for s in inputs.served():
        selector = managed_labels(inputs.service_name)
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
                            "port": plan.ingress[s.discovery_name],
                            "targetPort": container_port_name(s.discovery_name),
                        }
                    ],
                },
            }
        )
    return out
