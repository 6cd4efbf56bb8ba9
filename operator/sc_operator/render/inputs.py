"""What the renderer needs, gathered by the caller (the reconcile handlers) into one value.

Rendering is pure: the same :class:`RenderInputs` always yields the same children, byte for byte, so a
restarted operator re-renders exactly what it created and never rolls a Deployment by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sc_operator.api import (
    ConnectDeploymentSpec,
    ConnectServiceSpec,
    ContainerDefinition,
    ServiceConnectConfiguration,
    TaskDefinition,
)
from sc_operator.api.common import Endpoint
from sc_operator.api.tls import MutualTls
from sc_operator.render.names import INTERCEPTION_LABEL
from sc_operator.settings import Interception, OperatorSettings

#: The first Kubernetes version with native sidecars (init containers with ``restartPolicy: Always``)
#: enabled by default.
NATIVE_SIDECAR_VERSION = (1, 29)


class RenderError(Exception):
    """The inputs cannot be rendered; the message names the field and the rule."""


@dataclass(frozen=True)
class ServedEndpoint:
    """An endpoint this service serves, with the ECS defaults applied."""

    discovery_name: str
    port_name: str
    container_port: int
    app_protocol: str | None
    ingress_port_override: int | None
    idle_timeout_seconds: int | None
    per_request_timeout_seconds: int | None
    #: The path of the ServiceConnectService in the spec, for messages.
    field: str
    #: The entry has a ``tls`` block: the ingress listener accepts TLS 1.3 only.
    tls: bool = False
    #: Its ``tls.mutualTls``: callers must present a certificate (None: they need not).
    mutual_tls: MutualTls | None = None


@dataclass(frozen=True)
class RenderInputs:
    """Everything one rendering depends on.

    The task definition and the Service Connect configuration come from the ConnectDeployment when it
    records them (so a rollback renders the old definition) and from the ConnectService otherwise; the
    count, deployment configuration and proxy sizing fields always come from the ConnectService.
    """

    service_name: str
    k8s_namespace: str
    service_uid: str
    service: ConnectServiceSpec
    deployment_name: str
    deployment_uid: str
    deployment: ConnectDeploymentSpec
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    server_version: tuple[int, int] = (1, 20)
    interception: Interception = "redirect"
    namespace_services: int = 0
    namespace_tasks: int = 0

    @property
    def task_definition(self) -> TaskDefinition:
        if self.deployment.task_definition is not None:
            return self.deployment.task_definition
        return self.service.task_definition

    @property
    def service_connect(self) -> ServiceConnectConfiguration | None:
        """The Service Connect configuration in force, or None when it is absent or disabled."""
        if self.deployment.task_definition is not None:
            scc = self.deployment.service_connect_configuration
        else:
            scc = self.service.service_connect_configuration
        return scc if scc is not None and scc.enabled else None

    @property
    def connect_namespace(self) -> str:
        """The ConnectNamespace's name (the ConnectDeployment's, after defaulting)."""
        scc = self.service_connect
        return self.deployment.namespace or (scc.namespace if scc and scc.namespace else "") or ""

    @property
    def pinned(self) -> list[Endpoint]:
        """The pinned endpoints this rollout's tasks reach through the proxy.

        That is the namespace's endpoints as pinned at the rollout's creation, except, in the ``listeners``
        mode, the service's own endpoints whose alias port the task binds itself (nginx serving port 80
        and aliased as nginx:80): the proxy could not bind that alias, and a task reaches itself directly.
        """
        pinned = list(self.deployment.endpoints or [])
        if self.interception != "listeners":
            return pinned
        own_ports = {port for port, _ in self.task_ports()}
        return [ep for ep in pinned if not (self.owns(ep) and ep.port in own_ports)]

    def owns(self, ep: Endpoint) -> bool:
        """Whether ``ep`` is one of this service's own endpoints."""
        mine = ep.service.namespace == self.k8s_namespace and ep.service.name == self.service_name
        return mine and ep.local

    @property
    def native_sidecar(self) -> bool:
        return self.server_version >= NATIVE_SIDECAR_VERSION

    def served(self) -> list[ServedEndpoint]:
        """The endpoints this service serves, in configuration order (raises RenderError for an unknown
        portName, which validation refuses first)."""
        scc = self.service_connect
        if scc is None:
            return []
        mappings: dict[str, tuple[int, str | None]] = {}
        for c in self.task_definition.container_definitions:
            for pm in c.port_mappings or []:
                if pm.name and pm.container_port is not None and pm.name not in mappings:
                    mappings[pm.name] = (pm.container_port, pm.app_protocol)
        out = []
        for i, s in enumerate(scc.services or []):
            where = f"spec.serviceConnectConfiguration.services[{i}]"
            if s.port_name not in mappings:
                raise RenderError(
                    f"{where}.portName: {s.port_name!r} names no portMapping of the task definition"
                )
            port, proto = mappings[s.port_name]
            out.append(
                ServedEndpoint(
                    discovery_name=s.discovery_name or s.port_name,
                    port_name=s.port_name,
                    container_port=port,
                    app_protocol=proto,
                    ingress_port_override=s.ingress_port_override or None,
                    idle_timeout_seconds=s.timeout.idle_timeout_seconds if s.timeout else None,
                    per_request_timeout_seconds=s.timeout.per_request_timeout_seconds if s.timeout else None,
                    field=where,
                    tls=s.tls is not None,
                    mutual_tls=s.tls.mutual_tls if s.tls is not None else None,
                )
            )
        return out

    def task_ports(self) -> list[tuple[int, str]]:
        """Every containerPort of the task with the field that declares it."""
        out = []
        for ci, c in enumerate(self.task_definition.container_definitions):
            for pi, pm in enumerate(c.port_mappings or []):
                if pm.container_port:
                    out.append(
                        (
                            pm.container_port,
                            f"spec.taskDefinition.containerDefinitions[{ci}].portMappings[{pi}]",
                        )
                    )
        return out

    def containers(self) -> list[ContainerDefinition]:
        return list(self.task_definition.container_definitions)


def interception_mode(namespace_labels: Mapping[str, str] | None, settings: OperatorSettings) -> Interception:
    """The interception mode of a Kubernetes namespace: its ``serviceconnect.dev/interception`` label when
    it is ``redirect`` or ``listeners``, else the operator setting."""
    value = (namespace_labels or {}).get(INTERCEPTION_LABEL)
    if value == "listeners":
        return "listeners"
    if value == "redirect":
        return "redirect"
    return settings.interception


def parse_server_version(major: str, minor: str) -> tuple[int, int]:
    """The API server's ``/version`` major/minor (``"1"``, ``"29+"`` on some distributions) as numbers."""

    def num(s: str) -> int:
        digits = "".join(ch for ch in s if ch.isdigit())
        if not digits:
            raise ValueError(f"server version part {s!r} has no number")
        return int(digits)

    return num(major), num(minor)
