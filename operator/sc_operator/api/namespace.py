"""``ConnectNamespace``: the cluster-scoped registry of endpoints (an AWS Cloud Map namespace)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from sc_operator.api.common import ApiModel, Condition, Count, Endpoint, StatusModel
from sc_operator.api.service import AutoRedeploy
from sc_operator.api.tls import NamespaceTls


class ConnectNamespaceSpec(ApiModel):
    """The desired state of a ConnectNamespace; its name is the namespace name services refer to."""

    description: Annotated[str, Field(max_length=1024)] | None = None
    auto_redeploy: AutoRedeploy | None = None
    """Ours: the default autoRedeploy policy of the ConnectServices in this namespace (each may override
    it field by field). Unset: off, as in ECS."""
    tls: NamespaceTls | None = None
    """Ours: the CA of the namespace's TLS services whose issuerCertificateAuthority is {} (unset: a CA
    the operator creates for the namespace)."""


class ServiceUsage(StatusModel):
    """A ConnectService using the namespace and how many tasks it runs."""

    namespace: str
    name: str
    tasks: Count | None = None


class ConnectNamespaceStatus(StatusModel):
    """The registry: every endpoint with its owner, and a revision that grows on every change."""

    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    endpoints: list[Endpoint] | None = None
    endpoint_count: Count | None = None
    """len(endpoints), kept for `kubectl get` (a printer column cannot count)."""
    revision: Count | None = None
    """Grows by one on every change to endpoints; ConnectDeployments record the revision they pinned."""
    services: list[ServiceUsage] | None = None
    """Every ConnectService using the namespace, client-only ones included: they hold it from deletion."""
    service_count: Count | None = None
    """ConnectServices using the namespace, client-only ones included."""
    task_count: Count | None = None
    """Running tasks (pods) of those services; more than 2000 adds proxy memory."""
