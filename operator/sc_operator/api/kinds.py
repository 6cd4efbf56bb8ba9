"""The three kinds as data: names, scope, models and printer columns (read by the CRD generator)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sc_operator import GROUP, VERSION
from sc_operator.api.common import ApiModel, StatusModel
from sc_operator.api.deployment import ConnectDeploymentSpec, ConnectDeploymentStatus
from sc_operator.api.namespace import ConnectNamespaceSpec, ConnectNamespaceStatus
from sc_operator.api.service import ConnectServiceSpec, ConnectServiceStatus

CATEGORY = "serviceconnect"


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column (additionalPrinterColumns)."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str = ""
    priority: int = 0
    """0 shows the column always, 1 only with -o wide."""


def _age() -> PrinterColumn:
    return PrinterColumn("Age", "date", ".metadata.creationTimestamp")


@dataclass(frozen=True)
class Kind:
    """A custom resource kind and everything needed to write its CRD."""

    kind: str
    plural: str
    scope: Literal["Namespaced", "Cluster"]
    short_names: tuple[str, ...]
    spec_model: type[ApiModel]
    status_model: type[StatusModel]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = field(default=())
    spec_required: bool = True

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{VERSION}"


def _accepted() -> PrinterColumn:
    return PrinterColumn(
        "Accepted",
        "string",
        '.status.conditions[?(@.type=="Accepted")].status',
        "Whether the spec passed validation",
    )


CONNECT_NAMESPACE = Kind(
    kind="ConnectNamespace",
    plural="connectnamespaces",
    scope="Cluster",
    short_names=("cns",),
    spec_model=ConnectNamespaceSpec,
    status_model=ConnectNamespaceStatus,
    description="A Service Connect namespace (an AWS Cloud Map namespace): the registry of endpoints.",
    spec_required=False,
    printer_columns=(
        PrinterColumn("Endpoints", "integer", ".status.endpointCount", "Registered endpoints"),
        PrinterColumn("Services", "integer", ".status.serviceCount", "ConnectServices using it"),
        PrinterColumn("Revision", "integer", ".status.revision", "Grows on every endpoint change"),
        PrinterColumn("Tasks", "integer", ".status.taskCount", "Running tasks of its services", 1),
        _age(),
    ),
)

CONNECT_SERVICE = Kind(
    kind="ConnectService",
    plural="connectservices",
    scope="Namespaced",
    short_names=("csvc",),
    spec_model=ConnectServiceSpec,
    status_model=ConnectServiceStatus,
    description="An ECS service with Service Connect: a task definition run desiredCount times.",
    printer_columns=(
        PrinterColumn("Desired", "integer", ".spec.desiredCount"),
        PrinterColumn("Running", "integer", ".status.runningCount"),
        PrinterColumn(
            "Rollout",
            "string",
            '.status.deployments[?(@.status=="PRIMARY")].rolloutState',
            "Rollout state of the PRIMARY deployment",
        ),
        # Not called "Namespace": `kubectl get -A` already prints the Kubernetes namespace under that name.
        PrinterColumn("ConnectNamespace", "string", ".status.namespace", "The ConnectNamespace"),
        _accepted(),
        PrinterColumn(
            "Reason",
            "string",
            '.status.conditions[?(@.type=="Accepted")].reason',
            "Why the spec was (not) accepted",
            1,
        ),
        _age(),
    ),
)

CONNECT_DEPLOYMENT = Kind(
    kind="ConnectDeployment",
    plural="connectdeployments",
    scope="Namespaced",
    short_names=("cdep",),
    spec_model=ConnectDeploymentSpec,
    status_model=ConnectDeploymentStatus,
    description="One rollout of a ConnectService (an ECS deployment); created by the operator, read-only.",
    printer_columns=(
        PrinterColumn("Service", "string", ".spec.service", "The owning ConnectService", 1),
        PrinterColumn("Status", "string", ".status.status", "PRIMARY, ACTIVE or INACTIVE"),
        PrinterColumn("Rollout", "string", ".status.rolloutState"),
        PrinterColumn("Running", "integer", ".status.runningCount"),
        PrinterColumn("Reason", "string", ".status.rolloutStateReason", "", 1),
        _age(),
    ),
)

KINDS: tuple[Kind, ...] = (CONNECT_NAMESPACE, CONNECT_SERVICE, CONNECT_DEPLOYMENT)
