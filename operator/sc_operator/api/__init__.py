"""The API of Service Connect for Kubernetes as pydantic models: the single source of truth.

Group ``serviceconnect.dev``, version ``v1alpha1``. Field names are the ECS API's (camelCase on the wire,
snake_case in Python). Parse a stored object with ``ConnectServiceSpec.model_validate(obj["spec"])`` and
write one back with ``model.to_wire()`` (by alias, unset fields left out). ``sc_operator.crdgen`` turns the
models into CustomResourceDefinitions.
"""

from sc_operator.api.common import (
    ApiModel,
    AppProtocol,
    Condition,
    Endpoint,
    ServiceRef,
    StatusModel,
)
from sc_operator.api.deployment import ConnectDeploymentSpec, ConnectDeploymentStatus
from sc_operator.api.kinds import CONNECT_DEPLOYMENT, CONNECT_NAMESPACE, CONNECT_SERVICE, KINDS, Kind
from sc_operator.api.namespace import ConnectNamespaceSpec, ConnectNamespaceStatus
from sc_operator.api.service import (
    ClientAlias,
    ConnectServiceSpec,
    ConnectServiceStatus,
    DeploymentSummary,
    ServiceConnectConfiguration,
    ServiceConnectService,
)
from sc_operator.api.taskdef import ContainerDefinition, PortMapping, TaskDefinition
from sc_operator.api.units import parse_cpu, parse_memory

__all__ = [
    "CONNECT_DEPLOYMENT",
    "CONNECT_NAMESPACE",
    "CONNECT_SERVICE",
    "KINDS",
    "ApiModel",
    "AppProtocol",
    "ClientAlias",
    "Condition",
    "ConnectDeploymentSpec",
    "ConnectDeploymentStatus",
    "ConnectNamespaceSpec",
    "ConnectNamespaceStatus",
    "ConnectServiceSpec",
    "ConnectServiceStatus",
    "ContainerDefinition",
    "DeploymentSummary",
    "Endpoint",
    "Kind",
    "PortMapping",
    "ServiceConnectConfiguration",
    "ServiceConnectService",
    "ServiceRef",
    "StatusModel",
    "TaskDefinition",
    "parse_cpu",
    "parse_memory",
]
